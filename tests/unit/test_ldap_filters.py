"""LDAP search filters from templates and untrusted input (RFC 4515 §3): injection is impossible."""

from __future__ import annotations

import pytest

from keyhall.errors import InvalidInput
from keyhall.protocols.ldap.filters import MAX_USERNAME_LENGTH, escape_assertion_value, group_filter, user_filter


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("alice", "(uid=alice)"),
        ("*", r"(uid=\2a)"),
        ("alice)(uid=*", r"(uid=alice\29\28uid=\2a)"),
        ("*)(|(objectClass=*", r"(uid=\2a\29\28|\28objectClass=\2a)"),
        ("*)(objectClass=*", r"(uid=\2a\29\28objectClass=\2a)"),
        ("back\\slash", r"(uid=back\5cslash)"),
        ("\\2a", r"(uid=\5c2a)"),  # an escape typed by the person is text, not an escape
        ("wild*card", r"(uid=wild\2acard)"),
        ("zoë", "(uid=zoë)"),  # UTF-8 stays as it is (RFC 4515 §3 UTFMB)
        ("名前", "(uid=名前)"),
    ],
)
def test_user_input_is_an_assertion_value(username: str, expected: str) -> None:
    assert user_filter("(uid=%s)", username) == expected


@pytest.mark.parametrize("username", ["*", "alice)(uid=*", "*)(|(objectClass=*", "a)(b", "((", "))"])
def test_escaped_input_adds_no_parentheses_or_wildcards(username: str) -> None:
    built = user_filter("(&(objectClass=person)(uid=%s))", username)
    assert built.count("(") == built.count(")") == 3  # the template's own three pairs
    assert "*" not in built


def test_both_placeholders_and_every_occurrence_are_replaced() -> None:
    template = "(|(uid=%s)(mail={username}))"
    assert user_filter(template, "a*") == r"(|(uid=a\2a)(mail=a\2a))"


def test_input_holding_a_placeholder_is_not_substituted_again() -> None:
    assert user_filter("(|(uid=%s)(mail={username}))", "{username}%s") == "(|(uid={username}%s)(mail={username}%s))"


@pytest.mark.parametrize("username", ["", "   ", "alice\x00", "\x00", "bad\nname", "tab\there", "del\x7f",
                                      "x" * (MAX_USERNAME_LENGTH + 1), "surrogate\udc80"])
def test_impossible_usernames_are_refused(username: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        user_filter("(uid=%s)", username)
    assert caught.value.field == "username"


def test_a_username_of_the_maximum_length_is_accepted() -> None:
    assert user_filter("(uid=%s)", "x" * MAX_USERNAME_LENGTH) == f"(uid={'x' * MAX_USERNAME_LENGTH})"


def test_a_template_without_placeholder_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        user_filter("(uid=alice)", "bob")
    assert caught.value.field == "user_search_filter"


def test_escape_covers_every_rfc4515_special_character() -> None:
    assert escape_assertion_value("\\*()\x00") == r"\5c\2a\28\29\00"


@pytest.mark.parametrize("template", ["(member=%s)", "(member={dn})", "(uniqueMember={user_dn})"])
def test_group_filter_puts_the_escaped_dn_in(template: str) -> None:
    dn = r"uid=wild*card,ou=people\, (east),dc=example,dc=test"
    attribute = template[1:template.index("=")]
    assert group_filter(template, dn) == rf"({attribute}=uid=wild\2acard,ou=people\5c, \28east\29,dc=example,dc=test)"


def test_group_filter_can_use_the_login_name_too() -> None:
    built = group_filter("(|(member={dn})(memberUid={username}))", "uid=a,dc=x", username="a*)")
    assert built == r"(|(member=uid=a,dc=x)(memberUid=a\2a\29))"


def test_group_filter_needs_the_login_name_when_it_names_it() -> None:
    with pytest.raises(InvalidInput):
        group_filter("(memberUid={username})", "uid=a,dc=x")


@pytest.mark.parametrize("dn", ["", "uid=a\x00,dc=x"])
def test_group_filter_refuses_impossible_dns(dn: str) -> None:
    with pytest.raises(InvalidInput):
        group_filter("(member=%s)", dn)


def test_group_filter_without_placeholder_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        group_filter("(objectClass=groupOfNames)", "uid=a,dc=x")
    assert caught.value.field == "group_search_filter"
