"""SCIM filters (RFC 7644 §3.4.2.2) reduced to the predicates a store runs: the attributes Keyhall
keeps in columns, case-insensitive names, Entra ID's ``emails[type eq "work"].value`` form, and
``invalidFilter`` for what cannot be run."""

from __future__ import annotations

import pytest
from scim2_models import SCIMException, ScimFilter

from keyhall.errors import InvalidInput
from keyhall.protocols.scim.filters import (
    GROUP_FIELDS,
    GROUP_URN,
    USER_FIELDS,
    USER_URN,
    AllOf,
    AnyOf,
    Compare,
    IsPresent,
    Negation,
    _reduce,
    parse_filter,
)


@pytest.mark.parametrize(("text", "expected"), [
    ('userName eq "Bjensen"', Compare("user_name", "eq", "Bjensen")),
    ('USERNAME Eq "x"', Compare("user_name", "eq", "x")),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "j"', Compare("user_name", "sw", "j")),
    ('externalId eq "00u1"', Compare("external_id", "eq", "00u1")),
    ('id ne "1"', Compare("id", "ne", "1")),
    ("externalId pr", IsPresent("external_id")),
    ('displayName co "Ann"', Compare("name", "co", "Ann")),
    ("active eq false", Compare("active", "eq", False)),
    ('emails.value eq "a@b.example"', Compare("email", "eq", "a@b.example")),
    ('emails[type eq "work"].value eq "a@b.example"', AllOf((AllOf(()), Compare("email", "eq", "a@b.example")))),
    ('userName eq "a" or externalId eq "b"', AnyOf((Compare("user_name", "eq", "a"),
                                                     Compare("external_id", "eq", "b")))),
    ('not (userName sw "a") and active eq true', AllOf((Negation(Compare("user_name", "sw", "a")),
                                                       Compare("active", "eq", True)))),
])
def test_user_filters(text: str, expected: object) -> None:
    assert parse_filter(text, "User") == expected


def test_group_filters() -> None:
    assert parse_filter('displayName eq "Eng"', "Group") == Compare("display_name", "eq", "Eng")
    assert parse_filter('members[value eq "u1"]', "Group") == Compare("member", "eq", "u1")
    assert parse_filter('members.value eq "u1"', "Group") == Compare("member", "eq", "u1")


def test_case_exactness_follows_rfc_7643() -> None:
    assert Compare("user_name", "eq", "x").case_insensitive
    assert Compare("display_name", "eq", "x").case_insensitive
    assert not Compare("external_id", "eq", "x").case_insensitive
    assert not Compare("id", "eq", "x").case_insensitive


@pytest.mark.parametrize(("text", "resource"), [
    ('userName eq', "User"),
    ('userName eq "unterminated', "User"),
    ('title eq "x"', "User"),  # kept in the resource, not in a column: refused, not silently empty
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x"', "User"),
    ("active eq \"yes\"", "User"),
    ('userName gt 3', "User"),
    ('userName eq "x"', "Group"),
    ("x" * 3000, "User"),
])
def test_invalid_filters_are_invalid_filter_errors(text: str, resource: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(text, resource)  # type: ignore[arg-type]
    assert caught.value.details["scim_type"] == "invalidFilter"
    assert caught.value.field == "filter"


@pytest.mark.parametrize("text", [
    'userName eq "Ann@x.example"', 'USERNAME EQ "a"', 'userName Eq "a\\"b"', 'userName eq "\\u00e9t\\u00e9"',
    ' externalId eq "00u1" ', 'emails.value eq "a@b"', 'emails eq "a@b"', 'name.givenName eq "Ann"', 'id eq "x"',
    'displayName eq "Eng"', 'members.value eq "u1"', 'members eq "u1"', 'userName eq ""', 'userName eq "a\\\\b"',
    'title eq "x"', 'active eq "true"', 'userName eq "tab\\there"', 'userName  eq  "x"', 'userName eq "a/b\\/c"',
    'userName eq "unterminated', 'userName eq "bad \\q escape"', 'userName eq 3',
])
@pytest.mark.parametrize("resource", ["User", "Group"])
def test_a_lookup_read_without_the_grammar_means_what_the_grammar_reads(text: str, resource: str) -> None:
    """``attribute eq "string"`` is read by a regular expression (the grammar costs a tenth of a
    lookup): the same predicate as the grammar's, or the grammar's own error."""
    fields = USER_FIELDS if resource == "User" else GROUP_FIELDS
    urn = USER_URN if resource == "User" else GROUP_URN
    try:
        by_grammar: object = _reduce(ScimFilter(text).ast, fields, urn, prefix="")
    except (InvalidInput, SCIMException, ValueError):
        with pytest.raises(InvalidInput) as caught:
            parse_filter(text, resource)  # type: ignore[arg-type]
        assert caught.value.details["scim_type"] == "invalidFilter"
        return
    assert parse_filter(text, resource) == by_grammar  # type: ignore[arg-type]
