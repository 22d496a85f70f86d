"""A secret follows its endpoint: the pure merge rule of ``keyhall.core.connections.apply_input``.

Changing where a stored secret would be sent (OIDC issuer, discovery, token or userinfo URL; LDAP
server, port, security or trusted CA) drops it unless the same request sends a new one; the mask
in such a request is refused naming the secret's field. Endpoints are compared as they take
effect, so the discovered value sent back, or the same server spelled another way, moves nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from keyhall.core.connections import Connection, apply_input
from keyhall.core.vocabulary import SECRET_MASK
from keyhall.errors import InvalidInput
from tests.unit.test_connection_rules import (
    BIND_PASSWORD,
    CLIENT_SECRET,
    LATER,
    ORG,
    certificate,
    create,
    ldap_body,
    metadata_xml,
    oidc_body,
    parse,
    private_key_pem,
    saml_body,
    update,
    verified,
)

DISCOVERED = {
    "discovery_url": "https://idp.example.com/.well-known/openid-configuration",
    "issuer": "https://idp.example.com",
    "authorization_endpoint": "https://idp.example.com/authorize",
    "token_endpoint": "https://idp.example.com/token",
    "userinfo_endpoint": "https://idp.example.com/userinfo",
    "jwks_uri": "https://idp.example.com/jwks",
}
ATTACKER = "https://attacker.example.net"


def stored_oidc(**settings: Any) -> Connection:
    """An OIDC connection as stored after its first save: secret set, discovery done."""
    conn = create(oidc_body(oidc={"issuer": "https://idp.example.com", "client_id": "keyhall",
                                  "client_secret": CLIENT_SECRET, **settings}))
    return verified(replace(conn, discovered=dict(DISCOVERED)))


def stored_ldap(**settings: Any) -> Connection:
    body = ldap_body()
    return verified(create({**body, "ldap": {**body["ldap"], **settings}}))


def refused(existing: Connection, data: dict[str, Any]) -> InvalidInput:
    before = (dict(existing.settings), dict(existing.secrets))
    with pytest.raises(InvalidInput) as caught:
        apply_input(existing, parse(data), organization_id=ORG, now=LATER)
    assert (existing.settings, existing.secrets) == before  # nothing half-applied
    return caught.value


# --- OIDC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"token_url": f"{ATTACKER}/token"},
    {"issuer": ATTACKER},
    {"discovery_url": f"{ATTACKER}/.well-known/openid-configuration"},
    {"userinfo_url": f"{ATTACKER}/userinfo"},
    {"issuer": ATTACKER, "client_id": "attacker-client"},
])
def test_moving_an_oidc_endpoint_without_the_secret_clears_it(change: dict[str, Any]) -> None:
    outcome = update(stored_oidc(), {"oidc": change})
    conn = outcome.connection
    assert conn.secrets == {}
    assert conn.secrets_set() == {"client_secret_set": False}
    assert conn.snapshot()["oidc"]["client_secret_set"] is False  # what the audit diff records
    for name, value in change.items():
        assert conn.settings[name] == value


@pytest.mark.parametrize("change", [{"token_url": f"{ATTACKER}/token"}, {"issuer": ATTACKER}])
def test_moving_an_oidc_endpoint_with_a_new_secret_keeps_the_new_one(change: dict[str, Any]) -> None:
    conn = update(stored_oidc(), {"oidc": {**change, "client_secret": "secret-for-the-new-idp"}}).connection
    assert conn.secrets == {"client_secret": "secret-for-the-new-idp"}


@pytest.mark.parametrize("change", [
    {"token_url": f"{ATTACKER}/token"},
    {"issuer": ATTACKER},
    {"discovery_url": f"{ATTACKER}/.well-known/openid-configuration"},
    {"userinfo_url": f"{ATTACKER}/userinfo"},
])
def test_the_mask_with_a_moved_endpoint_is_refused_naming_the_secret(change: dict[str, Any]) -> None:
    error = refused(stored_oidc(), {"oidc": {**change, "client_secret": SECRET_MASK}})
    assert error.field == "oidc.client_secret"
    assert error.message.startswith("oidc.client_secret: ")
    assert error.details["moved_by"] == [f"oidc.{name}" for name in change]
    assert CLIENT_SECRET not in error.message


@pytest.mark.parametrize("change", [
    {"client_id": "another-client"},
    {"scope": "openid email"},
    {"authorization_url": f"{ATTACKER}/authorize"},  # only the browser goes there, with public parameters
    {"jwks_url": f"{ATTACKER}/jwks"},  # fetched without credentials; resets is_verified instead
    {"token_endpoint_auth_method": "client_secret_post"},
    {"client_secret": SECRET_MASK, "scope": "openid"},
])
def test_changes_that_do_not_move_the_secret_keep_it(change: dict[str, Any]) -> None:
    conn = update(stored_oidc(), {"oidc": change}).connection
    assert conn.secrets == {"client_secret": CLIENT_SECRET}


def test_endpoints_sent_back_as_discovered_are_no_change() -> None:
    stored = stored_oidc()
    echoed = {"issuer": DISCOVERED["issuer"], "discovery_url": DISCOVERED["discovery_url"],
              "authorization_url": DISCOVERED["authorization_endpoint"], "token_url": DISCOVERED["token_endpoint"],
              "userinfo_url": DISCOVERED["userinfo_endpoint"], "jwks_url": DISCOVERED["jwks_uri"],
              "client_secret": SECRET_MASK}
    outcome = update(stored, {"oidc": echoed})
    conn = outcome.connection
    assert conn.secrets == {"client_secret": CLIENT_SECRET}
    assert outcome.identity_changed is False
    assert conn.is_verified is True
    for name in ("discovery_url", "authorization_url", "token_url", "userinfo_url", "jwks_url"):
        assert conn.settings[name] is None  # still follows the discovery document: no override stored


def test_an_explicit_endpoint_sent_again_unchanged_keeps_the_secret() -> None:
    stored = stored_oidc(token_url="https://idp.example.com/oauth/token")
    conn = update(stored, {"oidc": {"token_url": "https://idp.example.com/oauth/token",
                                    "client_secret": SECRET_MASK}}).connection
    assert conn.secrets == {"client_secret": CLIENT_SECRET}


def test_dropping_an_explicit_token_url_for_another_discovered_one_clears_the_secret() -> None:
    stored = stored_oidc(token_url="https://idp.example.com/oauth/token")
    conn = update(stored, {"oidc": {"token_url": None}}).connection
    assert conn.secrets == {}


def test_a_full_replacement_follows_the_same_rule() -> None:
    base = {"issuer": "https://idp.example.com", "client_id": "keyhall"}
    kept = update(stored_oidc(), {"oidc": base}, replace_all=True).connection
    assert kept.secrets == {"client_secret": CLIENT_SECRET}
    moved = update(stored_oidc(), {"oidc": {**base, "token_url": f"{ATTACKER}/token"}}, replace_all=True)
    assert moved.connection.secrets == {}


# --- LDAP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"server": "ldap.attacker.example.net"},
    {"port": 10389},
    {"security": "starttls"},
    {"security": "ldaps"},
    {"server": "ldaps://ldap.example.com"},
    {"security": "starttls", "ca_certificate": certificate()},
])
def test_moving_the_directory_without_the_password_is_refused_naming_it(change: dict[str, Any]) -> None:
    stored = stored_ldap()
    error = refused(stored, {"ldap": change})
    assert error.field == "ldap.bind_password"
    assert error.message.startswith("ldap.bind_password: ")
    assert set(error.details["moved_by"]) <= {f"ldap.{name}" for name in ("server", "port", "security",
                                                                           "ca_certificate")}
    assert error.details["moved_by"]
    assert stored.secrets == {"bind_password": BIND_PASSWORD}


def test_moving_the_directory_with_the_mask_is_refused_naming_the_password() -> None:
    error = refused(stored_ldap(), {"ldap": {"server": "ldap2.example.com", "bind_password": SECRET_MASK}})
    assert error.field == "ldap.bind_password"
    assert "ldap.server" in error.message
    assert "mask" in error.message
    assert error.details["moved_by"] == ["ldap.server"]


def test_moving_the_directory_with_its_password_keeps_the_new_one() -> None:
    conn = update(stored_ldap(), {"ldap": {"server": "ldap2.example.com", "port": 10389,
                                           "bind_password": "for-ldap2"}}).connection
    assert conn.secrets == {"bind_password": "for-ldap2"}


def test_moving_the_directory_to_an_anonymous_bind_clears_the_password() -> None:
    conn = update(stored_ldap(), {"ldap": {"server": "ldap2.example.com", "bind_dn": None}}).connection
    assert conn.secrets == {}
    assert conn.secrets_set() == {"bind_password_set": False}


@pytest.mark.parametrize(("stored_settings", "change"), [
    ({}, {"port": 389}),  # the default port, spelled out
    ({}, {"server": "ldap://LDAP.example.com:389/"}),
    ({"security": "ldaps"}, {"server": "ldaps://ldap.example.com", "port": 636}),
    ({}, {"base_dn": "dc=other,dc=com", "bind_dn": "cn=other,dc=other,dc=com"}),
    ({}, {"user_search_filter": "(mail=%s)", "timeout_seconds": 2.0}),
])
def test_the_same_directory_spelled_otherwise_keeps_the_password(stored_settings: dict[str, Any],
                                                                 change: dict[str, Any]) -> None:
    conn = update(stored_ldap(**stored_settings), {"ldap": {**change, "bind_password": SECRET_MASK}}).connection
    assert conn.secrets == {"bind_password": BIND_PASSWORD}


# --- SAML ---------------------------------------------------------------------------------------


def test_saml_keeps_its_own_private_key_whatever_the_idp() -> None:
    """sp_private_key is Keyhall's key: it signs and decrypts here and is never sent to the IdP."""
    stored = verified(create(saml_body(saml={"metadata_xml": metadata_xml(), "sp_private_key": private_key_pem()})))
    conn = update(stored, {"saml": {"metadata_xml": None, "idp_entity_id": "https://attacker.example.net/saml",
                                    "sso_url": f"{ATTACKER}/sso", "certificates": [certificate()],
                                    "sp_private_key": SECRET_MASK}}).connection
    assert conn.secrets == {"sp_private_key": private_key_pem()}
