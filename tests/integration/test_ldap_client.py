"""The LDAP client and LDAP sign-in against a real OpenLDAP ``slapd`` (``tests.support.slapd``).

Service-account checks over plain LDAP, LDAPS and StartTLS with the test CA (and a wrong one);
sign-ins with good and bad passwords, unknown and ambiguous users, directory groups, and
usernames that try to inject filter syntax (RFC 4515 §3); what slapd received is read from its
log. Finally ``login.ldap.sign_in`` provisions a user on a real database.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from keyhall.core.access import SYSTEM
from keyhall.core.connection_service import Context, create_connection
from keyhall.core.connections import Connection, ConnectionInput
from keyhall.core.org_service import create_organization
from keyhall.errors import IdPValidationError, LdapError
from keyhall.idp.ldap_client import LdapIdentity, LdapLoginError, authenticate, check_service_account
from keyhall.login.flow import LoginFailed
from keyhall.login.ldap import BAD_CREDENTIALS, RETRY_REASONS, sign_in
from keyhall.runtime import Runtime
from keyhall.security.outbound import OutboundPolicy
from tests.support.peers import free_port
from tests.support.slapd import Slapd, group_dn, user_dn

pytestmark = pytest.mark.peers

INSECURE = OutboundPolicy(allow_insecure=True)
STRICT = OutboundPolicy()


def login(directory: Slapd, username: str, password: str, **overrides: Any) -> LdapIdentity:
    return authenticate(directory.ldap_settings(**overrides), directory.bind_secrets(), username, password,
                        policy=INSECURE)


def refusal(directory: Slapd, username: str, password: str, **overrides: Any) -> LdapLoginError:
    with pytest.raises(LdapLoginError) as caught:
        login(directory, username, password, **overrides)
    return caught.value


def check_fails(directory: Slapd, secrets: dict[str, str] | None = None, *, policy: OutboundPolicy = INSECURE,
                **overrides: Any) -> LdapError:
    with pytest.raises(LdapError) as caught:
        check_service_account(directory.ldap_settings(**overrides),
                              directory.bind_secrets() if secrets is None else secrets, policy=policy)
    return caught.value


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: only timeouts end a client's wait."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        listener.close()


# --- the service account check (what saving a connection does) -----------------------------------


def test_service_account_check_reports_the_directory(slapd: Slapd) -> None:
    found = check_service_account(slapd.ldap_settings(), slapd.bind_secrets(), policy=INSECURE)
    assert found["contacted"] is True
    assert found["server"] == f"ldap://127.0.0.1:{slapd.port}"
    assert found["security"] == "none"
    assert found["tls_verified"] is False
    assert found["bind"] == "service_account"
    assert found["base_dn_exists"] is found["user_search_base_exists"] is found["user_search_checked"] is True
    assert found["naming_contexts"] == [slapd.base_dn]
    assert found["supported_ldap_versions"] == ["3"]
    assert found["starttls_supported"] is True


def test_wrong_bind_password_names_the_ldap_result(slapd: Slapd) -> None:
    error = check_fails(slapd, {"bind_password": "not-the-password"})
    assert isinstance(error, IdPValidationError)
    assert error.code == "ldap_check_failed"
    assert "invalidCredentials (49)" in error.message
    assert slapd.service_dn in error.message
    assert error.details["result_code"] == 49
    assert "not-the-password" not in error.message


def test_unknown_bind_dn_is_refused_like_a_wrong_password(slapd: Slapd) -> None:
    error = check_fails(slapd, bind_dn=f"cn=nobody,ou=services,{slapd.base_dn}")
    assert "invalidCredentials (49)" in error.message


@pytest.mark.parametrize("field", ["base_dn", "user_search_base", "group_search_base"])
def test_a_missing_base_dn_is_named(slapd: Slapd, field: str) -> None:
    missing = f"ou=missing,{slapd.base_dn}" if field != "base_dn" else "dc=nowhere,dc=test"
    overrides: dict[str, Any] = {field: missing}
    error = check_fails(slapd, **overrides)
    assert f"ldap.{field}: {missing} does not exist" in error.message
    assert "noSuchObject (32)" in error.message


def test_anonymous_clients_do_not_see_the_tree(slapd: Slapd) -> None:
    error = check_fails(slapd, {}, bind_dn=None)
    assert "noSuchObject (32)" in error.message  # the ACLs hide the base from anonymous clients


def test_a_bind_dn_without_password_is_refused_before_contact(slapd: Slapd) -> None:
    error = check_fails(slapd, {}, port=free_port())
    assert "bind_password: is required with bind_dn" in error.message
    assert "RFC 4513 §5.1.2" in error.message


def test_a_server_that_is_down_fails_quickly_and_clearly(slapd: Slapd) -> None:
    started = time.monotonic()
    error = check_fails(slapd, port=free_port())
    assert time.monotonic() - started < 2.0
    assert "could not connect to ldap://127.0.0.1:" in error.message
    assert "connection refused" in error.message


@pytest.mark.parametrize("security", ["none", "ldaps", "starttls"])
def test_a_server_that_never_answers_times_out(slapd: Slapd, silent_port: int, security: str) -> None:
    started = time.monotonic()
    error = check_fails(slapd, port=silent_port, security=security, ca_certificate=slapd.ca_pem, timeout_seconds=1)
    assert time.monotonic() - started < 5.0
    assert "timed out" in error.message or "could not bind" in error.message


def test_ldaps_with_the_test_ca(slapd: Slapd) -> None:
    found = check_service_account(slapd.ldap_settings(port=slapd.ldaps_port, security="ldaps",
                                                      ca_certificate=slapd.ca_pem),
                                  slapd.bind_secrets(), policy=INSECURE)
    assert found["server"] == f"ldaps://127.0.0.1:{slapd.ldaps_port}"
    assert (found["security"], found["tls_verified"]) == ("ldaps", True)


def test_an_ldaps_url_selects_ldaps(slapd: Slapd) -> None:
    found = check_service_account(slapd.ldap_settings(server=f"ldaps://127.0.0.1:{slapd.ldaps_port}", port=None,
                                                      ca_certificate=slapd.ca_pem),
                                  slapd.bind_secrets(), policy=INSECURE)
    assert (found["security"], found["server"]) == ("ldaps", f"ldaps://127.0.0.1:{slapd.ldaps_port}")


def test_starttls_with_the_test_ca(slapd: Slapd) -> None:
    found = check_service_account(slapd.ldap_settings(security="starttls", ca_certificate=slapd.ca_pem),
                                  slapd.bind_secrets(), policy=INSECURE)
    assert (found["security"], found["tls_verified"]) == ("starttls", True)
    assert found["server"] == f"ldap://127.0.0.1:{slapd.port}"


@pytest.mark.parametrize("security", ["ldaps", "starttls"])
@pytest.mark.parametrize("trust", ["other_ca", "system"])
def test_tls_with_a_ca_that_did_not_issue_the_certificate_fails(slapd: Slapd, security: str, trust: str) -> None:
    port = slapd.ldaps_port if security == "ldaps" else slapd.port
    ca = slapd.certificates.other_ca_pem if trust == "other_ca" else None
    error = check_fails(slapd, port=port, security=security, ca_certificate=ca)
    assert "TLS certificate verification failed" in error.message
    # slapd sends its chain with the CA, which the client does not trust
    assert "self-signed certificate in certificate chain" in error.message


def test_ldaps_on_the_plain_port_fails_as_a_tls_problem(slapd: Slapd) -> None:
    error = check_fails(slapd, security="ldaps", ca_certificate=slapd.ca_pem, timeout_seconds=2)
    assert "could not connect" in error.message


def test_an_unusable_ca_certificate_is_named(slapd: Slapd) -> None:
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
    error = check_fails(slapd, security="ldaps", port=slapd.ldaps_port, ca_certificate=broken)
    assert "ldap.ca_certificate" in error.message


def test_without_the_insecure_allowance_plain_ldap_is_refused(slapd: Slapd) -> None:
    error = check_fails(slapd, policy=STRICT)
    assert "plain LDAP would send passwords in clear text" in error.message


def test_without_the_insecure_allowance_loopback_is_refused_before_contact(slapd: Slapd) -> None:
    accepted = f"(IP=127.0.0.1:{slapd.ldaps_port})"
    before = slapd.log().count(accepted)
    error = check_fails(slapd, policy=STRICT, port=slapd.ldaps_port, security="ldaps", ca_certificate=slapd.ca_pem)
    assert "host 127.0.0.1 is a loopback address" in error.message
    assert "KEYHALL_ALLOW_INSECURE_IDP_URLS" in error.message
    assert slapd.log().count(accepted) == before


def test_an_invalid_user_search_filter_is_found_by_the_check(slapd: Slapd) -> None:
    error = check_fails(slapd, user_search_filter="(uid=%s)(cn=%s)")
    assert error.message.startswith("ldap.user_search_filter: ")
    assert "is not a valid LDAP filter" in error.message


# --- authenticating people ---------------------------------------------------------------------


def test_alice_signs_in_with_her_attributes_and_groups(slapd: Slapd) -> None:
    identity = login(slapd, "alice", slapd.passwords["alice"])
    assert identity.dn == user_dn("alice")
    assert identity.attributes["uid"] == ["alice"]
    assert identity.attributes["mail"] == ["alice@example.test"]
    assert identity.attributes["givenName"] == ["Alice"]
    assert identity.attributes["sn"] == ["Archer"]
    assert identity.attributes["cn"] == ["Alice Archer"]
    assert re.fullmatch(r"[0-9a-f-]{36}", identity.attributes["entryUUID"][0])
    assert sorted(identity.groups) == sorted([group_dn("engineering"), group_dn("admins")])
    assert "userPassword" not in identity.attributes


def test_sign_in_over_ldaps_and_starttls(slapd: Slapd) -> None:
    over_ldaps = login(slapd, "bob", slapd.passwords["bob"], port=slapd.ldaps_port, security="ldaps",
                       ca_certificate=slapd.ca_pem)
    over_starttls = login(slapd, "bob", slapd.passwords["bob"], security="starttls", ca_certificate=slapd.ca_pem)
    assert over_ldaps.dn == over_starttls.dn == user_dn("bob")
    assert over_ldaps.groups == [group_dn("sales")]


def test_non_ascii_username_and_password(slapd: Slapd) -> None:
    identity = login(slapd, "zoë", slapd.passwords["zoë"])
    assert identity.dn == user_dn("zoë")
    assert identity.attributes["cn"] == ["Zoë Zeller"]
    assert identity.groups == [group_dn("admins")]


def test_a_wrong_password_is_invalid_credentials(slapd: Slapd) -> None:
    error = refusal(slapd, "alice", slapd.passwords["bob"])
    assert error.reason == "invalid_credentials"
    assert error.code == "ldap_login_failed"
    assert slapd.passwords["bob"] not in error.message


def test_an_unknown_user_is_user_not_found(slapd: Slapd) -> None:
    assert refusal(slapd, "mallory", "whatever").reason == "user_not_found"


@pytest.mark.parametrize("password", ["", " ", "\t\n"])
def test_an_empty_password_is_refused_before_any_contact(slapd: Slapd, password: str) -> None:
    # A closed port: had the client tried the server, the reason would be directory_unavailable.
    error = refusal(slapd, "alice", password, port=free_port())
    assert error.reason == "empty_password"
    binds_before = slapd.log().count(f'BIND dn="{user_dn("alice")}"')
    assert refusal(slapd, "alice", password).reason == "empty_password"
    assert slapd.log().count(f'BIND dn="{user_dn("alice")}"') == binds_before


def test_a_search_matching_two_entries_is_ambiguous(slapd: Slapd) -> None:
    error = refusal(slapd, "team@example.test", slapd.passwords["bob"], user_search_filter="(mail=%s)")
    assert error.reason == "ambiguous_user"


def test_sign_in_by_mail_with_the_username_placeholder(slapd: Slapd) -> None:
    identity = login(slapd, "alice@example.test", slapd.passwords["alice"],
                     user_search_filter="(&(objectClass=inetOrgPerson)(mail={username}))")
    assert identity.dn == user_dn("alice")


@pytest.mark.parametrize("username", ["*", "alice)(uid=*", "*)(objectClass=*", "*)(|(objectClass=*", "al*",
                                      "alice*", "*alice", "alice\\", "\\2a", "alice)", "(uid=alice)"])
def test_injection_attempts_never_authenticate(slapd: Slapd, username: str) -> None:
    error = refusal(slapd, username, slapd.passwords["alice"])
    assert error.reason == "user_not_found"


@pytest.mark.parametrize("username", ["alice\x00", "a" * 257, "bad\nname"])
def test_impossible_usernames_are_refused_before_contact(slapd: Slapd, username: str) -> None:
    assert refusal(slapd, username, "x", port=free_port()).reason == "user_not_found"


def test_the_escaped_filter_is_what_reaches_the_server(slapd: Slapd) -> None:
    refusal(slapd, "*)(|(objectClass=*", "x")
    received = re.findall(r'SRCH base="ou=people,dc=example,dc=test" scope=2 deref=0 filter="([^"]*)"', slapd.log())
    assert received[-1].lower() == r"(uid=\2a\29\28|\28objectclass=\2a)"


def test_a_star_in_a_uid_is_matched_literally(slapd: Slapd) -> None:
    assert login(slapd, "wild*card", slapd.passwords["wild*card"]).dn == user_dn("wild*card")
    assert refusal(slapd, "wild*", slapd.passwords["wild*card"]).reason == "user_not_found"
    assert refusal(slapd, "*card", slapd.passwords["wild*card"]).reason == "user_not_found"


@pytest.mark.parametrize("template", ["(member={dn})", "(&(objectClass=groupOfNames)(member=%s))"])
def test_groups_by_group_search(slapd: Slapd, template: str) -> None:
    identity = login(slapd, "alice", slapd.passwords["alice"], group_search_base=slapd.groups_dn,
                     group_search_filter=template)
    assert sorted(identity.groups) == sorted([group_dn("engineering"), group_dn("admins")])


def test_group_search_base_alone_uses_member_or_unique_member(slapd: Slapd) -> None:
    identity = login(slapd, "bob", slapd.passwords["bob"], group_search_base=slapd.groups_dn)
    assert identity.groups == [group_dn("sales")]


def test_a_wrong_service_password_is_the_directory_not_the_person(slapd: Slapd) -> None:
    with pytest.raises(LdapLoginError) as caught:
        authenticate(slapd.ldap_settings(), {"bind_password": "wrong"}, "alice", slapd.passwords["alice"],
                     policy=INSECURE)
    assert caught.value.reason == "directory_unavailable"
    assert "invalidCredentials (49)" in caught.value.message


def test_a_directory_that_is_down_is_unavailable(slapd: Slapd) -> None:
    started = time.monotonic()
    assert refusal(slapd, "alice", "x", port=free_port()).reason == "directory_unavailable"
    assert time.monotonic() - started < 2.0


def test_a_directory_that_never_answers_is_unavailable_in_bounded_time(slapd: Slapd, silent_port: int) -> None:
    started = time.monotonic()
    assert refusal(slapd, "alice", "x", port=silent_port, timeout_seconds=1).reason == "directory_unavailable"
    assert time.monotonic() - started < 5.0


def test_authentication_refuses_plain_ldap_without_the_allowance(slapd: Slapd) -> None:
    with pytest.raises(LdapLoginError) as caught:
        authenticate(slapd.ldap_settings(), slapd.bind_secrets(), "alice", slapd.passwords["alice"], policy=STRICT)
    assert caught.value.reason == "directory_unavailable"


# --- sign-in: directory → Keyhall user ----------------------------------------------------------


class _NoContact:
    """An inspector for creating the test connections: the check above is tested on its own."""

    def inspect_oidc(self, settings: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("not an OIDC connection")

    def inspect_saml(self, settings: dict[str, Any], now: datetime) -> dict[str, Any]:
        raise AssertionError("not a SAML connection")

    def inspect_ldap(self, settings: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
        return check_service_account(settings, secrets, policy=INSECURE)


@pytest.fixture
def ldap_connection(runtime: Runtime, slapd: Slapd) -> Connection:
    now = datetime.now(UTC)
    ctx = Context(principal=SYSTEM, request_id="test-ldap", now=now)
    suffix = uuid.uuid4().hex[:8]
    data = ConnectionInput.model_validate({
        "protocol": "ldap", "name": f"directory-{suffix}",
        "ldap": {**slapd.ldap_settings(), "bind_password": slapd.service_password},
    })
    with runtime.database.unit_of_work() as uow:
        org = create_organization(uow, ctx, f"LDAP org {suffix}")
        conn = create_connection(uow, ctx, org.id, data, _NoContact())
    assert conn.discovered is not None
    assert conn.discovered["contacted"] is True
    return conn


def test_sign_in_provisions_the_directory_user(runtime: Runtime, slapd: Slapd, ldap_connection: Connection) -> None:
    now = datetime.now(UTC)
    with runtime.database.unit_of_work() as uow:
        conn = uow.connections.get_any(ldap_connection.id)
        assert conn is not None
        assert conn.secrets.get("bind_password") == slapd.service_password
        user = sign_in(uow, conn, " alice ", slapd.passwords["alice"], now=now, policy=INSECURE)
        uow.commit()
        entry_uuid = login(slapd, "alice", slapd.passwords["alice"]).attributes["entryUUID"][0]
        assert user.subject == entry_uuid
        assert user.email == "alice@example.test"
        assert (user.given_name, user.family_name, user.name) == ("Alice", "Archer", "Alice Archer")
        assert user.username == "alice"
        assert sorted(user.groups) == sorted([group_dn("engineering"), group_dn("admins")])
        assert user.organization_id == ldap_connection.organization_id
    with runtime.database.unit_of_work() as uow:
        conn = uow.connections.get_any(ldap_connection.id)
        assert conn is not None
        again = sign_in(uow, conn, "alice", slapd.passwords["alice"], now=now, policy=INSECURE)
        assert again.id == user.id


@pytest.mark.parametrize(("username", "password_of", "reason", "status"), [
    ("alice", "bob", "invalid_credentials", 401),
    ("mallory", "alice", "user_not_found", 401),
    ("alice)(uid=*", "alice", "user_not_found", 401),
])
def test_sign_in_failures_read_alike_to_the_person(runtime: Runtime, slapd: Slapd, ldap_connection: Connection,
                                                   username: str, password_of: str, reason: str,
                                                   status: int) -> None:
    with runtime.database.unit_of_work() as uow:
        conn = uow.connections.get_any(ldap_connection.id)
        assert conn is not None
        with pytest.raises(LoginFailed) as caught:
            sign_in(uow, conn, username, slapd.passwords[password_of], now=datetime.now(UTC), policy=INSECURE)
    assert caught.value.reason == reason
    assert caught.value.status == status
    assert caught.value.message == BAD_CREDENTIALS
    assert caught.value.reason in RETRY_REASONS
    assert caught.value.connection is not None
    assert caught.value.connection.id == ldap_connection.id


def test_sign_in_with_an_empty_password(runtime: Runtime, ldap_connection: Connection) -> None:
    with runtime.database.unit_of_work() as uow:
        conn = uow.connections.get_any(ldap_connection.id)
        assert conn is not None
        with pytest.raises(LoginFailed) as caught:
            sign_in(uow, conn, "alice", "", now=datetime.now(UTC), policy=INSECURE)
    assert (caught.value.reason, caught.value.status) == ("empty_password", 400)
