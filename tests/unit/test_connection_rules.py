"""The connection rules of keyhall.core.connections, without a database or an IdP.

``apply_input`` is pure: each test builds a ``ConnectionInput`` the way a surface does (through
``validate_model``, so schema violations surface as ``InvalidInput`` naming the field), applies it
to nothing or to a stored connection, and looks at the connection that would be stored.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyhall.core.connection_settings import NAME_ID_FORMATS
from keyhall.core.connections import (
    Connection,
    ConnectionInput,
    Outcome,
    apply_input,
    connection_urls,
    sp_entity_id,
)
from keyhall.core.presets import LDAP_ATTRIBUTES, OIDC_STANDARD_CLAIMS, SAML_GENERIC_ATTRIBUTES
from keyhall.core.validation import validate_model
from keyhall.core.vocabulary import (
    SECRET_MASK,
    ConnectionStatus,
    GroupProvisioning,
    Protocol,
    Provider,
    UserProvisioning,
)
from keyhall.errors import Conflict, InvalidInput

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saml"
ORG = "6a1f5f0e-0000-4000-8000-000000000001"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
PUBLIC_URL = "https://sso.example.com"
CLIENT_SECRET = "oidc-client-secret-4711-do-not-leak"
BIND_PASSWORD = "ldap-bind-password-0815-do-not-leak"
MS_CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"


def metadata_xml() -> str:
    return (FIXTURES / "metadata-valid.xml").read_text()


def certificate() -> str:
    return (FIXTURES / "cert-valid.pem").read_text().strip()


def other_certificate() -> str:
    return (FIXTURES / "cert-expired.pem").read_text().strip()


def private_key_pem() -> str:
    # Only the shape is checked here ("a PEM private key"); no key material is needed.
    return "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA\n-----END PRIVATE KEY-----"


def parse(data: dict[str, Any]) -> ConnectionInput:
    return validate_model(ConnectionInput, data)


def create(data: dict[str, Any]) -> Connection:
    return apply_input(None, parse(data), organization_id=ORG, now=NOW).connection


def update(existing: Connection, data: dict[str, Any], *, replace_all: bool = False) -> Outcome:
    return apply_input(existing, parse(data), organization_id=ORG, now=LATER, replace_all=replace_all)


def invalid(existing: Connection | None, data: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        apply_input(existing, parse(data), organization_id=ORG, now=LATER)
    return caught.value


def invalid_input(data: dict[str, Any]) -> InvalidInput:
    """A schema violation: refused while building the input, before any rule runs."""
    with pytest.raises(InvalidInput) as caught:
        parse(data)
    return caught.value


def conflict(existing: Connection, data: dict[str, Any]) -> Conflict:
    with pytest.raises(Conflict) as caught:
        apply_input(existing, parse(data), organization_id=ORG, now=LATER)
    return caught.value


def oidc_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "protocol": "oidc",
        "name": "corp-oidc",
        "oidc": {"issuer": "https://idp.example.com", "client_id": "keyhall", "client_secret": CLIENT_SECRET},
    }
    body.update(extra)
    return body


def saml_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"protocol": "saml", "name": "corp-saml", "saml": {"metadata_xml": metadata_xml()}}
    body.update(extra)
    return body


def ldap_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "protocol": "ldap",
        "name": "corp-ldap",
        "ldap": {
            "server": "ldap.example.com",
            "base_dn": "dc=example,dc=com",
            "bind_dn": "cn=keyhall,dc=example,dc=com",
            "bind_password": BIND_PASSWORD,
        },
    }
    body.update(extra)
    return body


def verified(conn: Connection, *, password_login_disabled: bool = False) -> Connection:
    """The stored connection after a first successful sign-in (and, optionally, password login off)."""
    return replace(conn, is_verified=True, verified_at=NOW, disable_email_password=password_login_disabled)


# --- creation: defaults and provider presets -------------------------------------------------


def test_creation_fills_defaults() -> None:
    outcome = apply_input(None, parse(saml_body()), organization_id=ORG, now=NOW)
    conn = outcome.connection

    assert conn.organization_id == ORG
    assert conn.protocol is Protocol.SAML
    assert conn.provider is Provider.GENERIC
    assert conn.name == "corp-saml"
    assert conn.display_name is None
    assert conn.status is ConnectionStatus.ACTIVE
    assert conn.is_verified is False
    assert conn.verified_at is None
    assert conn.disable_email_password is False
    assert conn.sync_profile is True
    assert conn.user_provisioning is UserProvisioning.AUTO
    assert conn.group_provisioning is GroupProvisioning.SYNC
    assert conn.domains == []
    assert conn.contacts == []
    assert conn.group_mappings == []
    assert conn.attribute_mappings == SAML_GENERIC_ATTRIBUTES
    assert conn.version == 1
    assert conn.created_at == NOW
    assert conn.updated_at == NOW
    # Settings are the whole validated model, defaults included.
    assert conn.settings["metadata_xml"] == metadata_xml().strip()
    assert conn.settings["name_id_format"] == NAME_ID_FORMATS[0]  # emailAddress
    assert conn.settings["sign_requests"] is False
    assert conn.settings["certificates"] == []
    assert conn.secrets == {}
    assert outcome.needs_inspection is True
    assert outcome.identity_changed is False


def test_each_creation_gets_its_own_id() -> None:
    first, second = create(saml_body()), create(saml_body())
    assert first.id != second.id
    assert len(first.id) == 36


def test_name_defaults_to_display_name_then_to_protocol_and_id() -> None:
    body = saml_body(display_name="Corporate SSO")
    del body["name"]
    assert create(body).name == "Corporate SSO"

    body = saml_body()
    del body["name"]
    conn = create(body)
    assert conn.name == f"saml-{conn.id[:8]}"


@pytest.mark.parametrize(
    ("protocol", "body", "expected"),
    [
        ("oidc", oidc_body, OIDC_STANDARD_CLAIMS),
        ("ldap", ldap_body, LDAP_ATTRIBUTES),
    ],
)
def test_generic_provider_fills_the_protocols_standard_attribute_names(
    protocol: str, body: Any, expected: dict[str, str]
) -> None:
    conn = create(body())
    assert conn.protocol == protocol
    assert conn.attribute_mappings == expected


def test_azure_ad_saml_fills_microsoft_claim_uris() -> None:
    conn = create(saml_body(provider="azure_ad"))
    assert conn.provider is Provider.AZURE_AD
    assert conn.attribute_mappings["email"] == MS_CLAIMS + "emailaddress"
    assert conn.attribute_mappings["given_name"] == MS_CLAIMS + "givenname"
    assert conn.attribute_mappings["family_name"] == MS_CLAIMS + "surname"
    assert conn.attribute_mappings["name"] == "http://schemas.microsoft.com/identity/claims/displayname"
    assert conn.attribute_mappings["groups"] == "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"


def test_azure_ad_without_protocol_means_its_first_protocol_saml() -> None:
    body = saml_body(provider="azure_ad")
    del body["protocol"]
    conn = create(body)
    assert conn.protocol is Protocol.SAML
    assert conn.attribute_mappings["email"] == MS_CLAIMS + "emailaddress"


def test_owner_sent_mappings_win_over_the_preset() -> None:
    conn = create(saml_body(provider="azure_ad", attribute_mappings={"email": "mail"}))
    assert conn.attribute_mappings["email"] == "mail"
    assert conn.attribute_mappings["family_name"] == MS_CLAIMS + "surname"  # the rest of the preset stays


def test_google_workspace_oidc_fills_the_google_issuer() -> None:
    conn = create({"provider": "google_workspace", "protocol": "oidc", "oidc": {"client_id": "abc.apps"}})
    assert conn.provider is Provider.GOOGLE_WORKSPACE
    assert conn.settings["issuer"] == "https://accounts.google.com"
    assert conn.settings["client_id"] == "abc.apps"
    assert conn.attribute_mappings == OIDC_STANDARD_CLAIMS


def test_google_workspace_issuer_sent_by_the_owner_is_kept() -> None:
    conn = create({"provider": "google_workspace", "protocol": "oidc",
                   "oidc": {"client_id": "abc", "issuer": "https://accounts.example.com"}})
    assert conn.settings["issuer"] == "https://accounts.example.com"


@pytest.mark.parametrize(
    ("provider", "protocol", "block"),
    [
        ("azure_ad", "ldap", {"server": "ldap.example.com", "base_dn": "dc=example,dc=com"}),
        ("google_workspace", "ldap", {"server": "ldap.example.com", "base_dn": "dc=example,dc=com"}),
        ("okta", "ldap", {"server": "ldap.example.com", "base_dn": "dc=example,dc=com"}),
    ],
)
def test_provider_that_does_not_offer_the_protocol_is_refused(provider: str, protocol: str, block: Any) -> None:
    error = invalid(None, {"provider": provider, "protocol": protocol, protocol: block})
    assert error.field == "provider"
    assert provider in error.message
    assert error.details["field"] == "provider"


def test_protocol_block_is_required_on_creation() -> None:
    error = invalid(None, {"protocol": "saml", "name": "x"})
    assert error.field == "saml"

    error = invalid(None, {"provider": "google_workspace", "protocol": "oidc"})
    assert error.field == "oidc"


def test_protocol_is_required_when_no_provider_says_it() -> None:
    error = invalid(None, {"name": "x", "saml": {"metadata_xml": metadata_xml()}})
    assert error.field == "protocol"


def test_protocol_block_is_validated_with_its_field_path() -> None:
    error = invalid(None, {"protocol": "oidc", "oidc": {"issuer": "https://idp.example.com"}})
    assert error.field == "oidc.client_id"
    error = invalid(None, {"protocol": "oidc", "oidc": {"client_id": "x", "issuer": "ftp://idp.example.com"}})
    assert error.field == "oidc.issuer"
    error = invalid(None, {"protocol": "oidc", "oidc": {"client_id": "x", "unknown": 1}})
    assert error.field == "oidc.unknown"
    error = invalid(None, {"protocol": "ldap", "ldap": {"server": "ldap.example.com"}})
    assert error.field == "ldap.base_dn"


def test_disable_email_password_cannot_be_true_at_creation() -> None:
    error = invalid(None, saml_body(disable_email_password=True))
    assert error.field == "disable_email_password"
    assert "verified" in error.message


def test_read_only_fields_are_not_accepted_as_input() -> None:
    for name, value in (("is_verified", True), ("id", "x"), ("version", 7), ("acs_url", "https://x.example.com")):
        error = invalid_input(saml_body(**{name: value}))
        assert error.field == name


@pytest.mark.parametrize("name", ["protocol", "name", "status", "domains", "attribute_mappings"])
def test_null_is_refused_where_a_value_is_needed(name: str) -> None:
    error = invalid_input(saml_body(**{name: None}))
    assert name in error.message


def test_null_where_a_value_is_needed_names_the_field() -> None:
    """Like every other schema error, the error names the field (DESIGN: "400 and a message naming
    the field"), so a client can point at it: ``field`` is the field, not ``body``."""
    names = ("protocol", "provider", "name", "status", "disable_email_password", "domains", "attribute_mappings")
    fields = {name: invalid_input(saml_body(**{name: None})).field for name in names}
    assert fields == {name: name for name in names}
    messages = {name: invalid_input(saml_body(**{name: None})).message for name in names}
    assert all(message.startswith(f"{name}: ") for name, message in messages.items()), messages


# --- partial updates of the protocol block ---------------------------------------------------


def test_partial_update_keeps_unspecified_protocol_keys() -> None:
    stored = create(oidc_body(oidc={"issuer": "https://idp.example.com", "client_id": "keyhall",
                                    "client_secret": CLIENT_SECRET, "scope": "openid email",
                                    "fetch_userinfo": False}))
    conn = update(stored, {"oidc": {"token_endpoint_auth_method": "client_secret_post"}}).connection

    assert conn.settings["token_endpoint_auth_method"] == "client_secret_post"
    assert conn.settings["issuer"] == "https://idp.example.com"
    assert conn.settings["client_id"] == "keyhall"
    assert conn.settings["scope"] == "openid email"
    assert conn.settings["fetch_userinfo"] is False
    assert conn.secrets == {"client_secret": CLIENT_SECRET}
    assert conn.version == stored.version  # the service bumps the version when it stores
    assert conn.updated_at == LATER
    assert conn.created_at == NOW


def test_null_in_the_protocol_block_resets_a_key_to_its_default() -> None:
    stored = create(oidc_body(oidc={"issuer": "https://idp.example.com", "client_id": "keyhall",
                                    "scope": "openid email", "fetch_userinfo": False,
                                    "token_endpoint_auth_method": "client_secret_post"}))
    conn = update(stored, {"oidc": {"scope": None, "fetch_userinfo": None,
                                    "token_endpoint_auth_method": None}}).connection
    assert conn.settings["scope"] == "openid profile email"
    assert conn.settings["fetch_userinfo"] is True
    assert conn.settings["token_endpoint_auth_method"] is None
    assert conn.settings["client_id"] == "keyhall"


def test_null_for_a_required_protocol_key_is_refused() -> None:
    stored = create(oidc_body())
    error = invalid(stored, {"oidc": {"client_id": None}})
    assert error.field == "oidc.client_id"


def test_merged_block_is_validated_as_a_whole() -> None:
    stored = create(oidc_body())
    error = invalid(stored, {"oidc": {"scope": "profile email"}})
    assert error.field == "oidc.scope"
    assert "openid" in error.message


def test_full_replacement_resets_what_the_block_leaves_out() -> None:
    stored = create(oidc_body(oidc={"issuer": "https://idp.example.com", "client_id": "keyhall",
                                    "client_secret": CLIENT_SECRET, "scope": "openid email",
                                    "fetch_userinfo": False}))
    conn = update(stored, {"oidc": {"issuer": "https://idp.example.com", "client_id": "keyhall"}},
                  replace_all=True).connection
    assert conn.settings["scope"] == "openid profile email"
    assert conn.settings["fetch_userinfo"] is True
    assert conn.settings["issuer"] == "https://idp.example.com"


def test_update_without_a_protocol_block_leaves_settings_alone() -> None:
    stored = create(ldap_body())
    conn = update(stored, {"display_name": "Directory"}).connection
    assert conn.settings == stored.settings
    assert conn.secrets == stored.secrets


def test_apply_input_does_not_change_the_stored_connection() -> None:
    stored = verified(create(oidc_body(domains=["acme.example.com"])))
    settings_before = dict(stored.settings)
    update(stored, {"oidc": {"client_id": "another", "client_secret": "new-secret"},
                    "domains": ["beta.example.com"], "display_name": "New"})
    assert stored.settings == settings_before
    assert stored.secrets == {"client_secret": CLIENT_SECRET}
    assert stored.is_verified is True
    assert stored.domains == ["acme.example.com"]
    assert stored.display_name is None


def test_attribute_mappings_merge_on_update() -> None:
    stored = create(saml_body())
    conn = update(stored, {"attribute_mappings": {"email": "mail", "username": "uid"}}).connection
    assert conn.attribute_mappings == {**SAML_GENERIC_ATTRIBUTES, "email": "mail", "username": "uid"}


def test_attribute_mappings_only_name_profile_fields() -> None:
    error = invalid_input(saml_body(attribute_mappings={"shoe_size": "shoe"}))
    assert error.field == "attribute_mappings.shoe_size"


# --- secrets ---------------------------------------------------------------------------------


def test_secret_is_kept_apart_from_the_settings() -> None:
    conn = create(oidc_body())
    assert conn.secrets == {"client_secret": CLIENT_SECRET}
    assert "client_secret" not in conn.settings


def test_secret_mask_sent_back_keeps_the_stored_secret() -> None:
    stored = create(oidc_body())
    conn = update(stored, {"oidc": {"client_secret": SECRET_MASK, "scope": "openid"}}).connection
    assert conn.secrets == {"client_secret": CLIENT_SECRET}
    assert conn.settings["scope"] == "openid"


def test_secret_mask_on_creation_stores_no_secret() -> None:
    conn = create(oidc_body(oidc={"issuer": "https://idp.example.com", "client_id": "k",
                                  "client_secret": SECRET_MASK}))
    assert conn.secrets == {}
    assert conn.secrets_set() == {"client_secret_set": False}


@pytest.mark.parametrize("cleared", [None, ""])
def test_null_or_empty_secret_clears_it(cleared: str | None) -> None:
    stored = create(ldap_body())
    conn = update(stored, {"ldap": {"bind_password": cleared}}).connection
    assert conn.secrets == {}
    assert conn.secrets_set() == {"bind_password_set": False}
    assert conn.settings["bind_dn"] == "cn=keyhall,dc=example,dc=com"


def test_new_secret_value_replaces_the_stored_one() -> None:
    stored = create(ldap_body())
    conn = update(stored, {"ldap": {"bind_password": "a-brand-new-password"}}).connection
    assert conn.secrets == {"bind_password": "a-brand-new-password"}


def test_secret_must_be_a_string() -> None:
    stored = create(oidc_body())
    error = invalid(stored, {"oidc": {"client_secret": 12345}})
    assert error.field == "oidc.client_secret"


def test_a_refused_secret_is_not_echoed_in_the_error() -> None:
    too_long = "s" * 1025
    error = invalid(None, oidc_body(oidc={"issuer": "https://idp.example.com", "client_id": "k",
                                          "client_secret": too_long}))
    assert error.field == "oidc.client_secret"
    assert too_long not in error.message
    assert too_long not in repr(error.details)

    not_a_key = "this is not a private key but a secret all the same"
    error = invalid(None, saml_body(saml={"metadata_xml": metadata_xml(), "sp_private_key": not_a_key}))
    assert error.field == "saml.sp_private_key"
    assert not_a_key not in error.message
    assert not_a_key not in repr(error.details)


@pytest.mark.parametrize(
    ("body", "secret", "flag"),
    [
        (oidc_body, CLIENT_SECRET, "client_secret_set"),
        (ldap_body, BIND_PASSWORD, "bind_password_set"),
    ],
)
def test_snapshot_holds_set_flags_never_secrets(body: Any, secret: str, flag: str) -> None:
    conn = create(body())
    snapshot = conn.snapshot()
    assert snapshot[str(conn.protocol)][flag] is True
    assert secret not in repr(snapshot)


def test_snapshot_of_saml_private_key() -> None:
    key = private_key_pem()
    conn = create(saml_body(saml={"metadata_xml": metadata_xml(), "sp_private_key": key}))
    assert conn.secrets == {"sp_private_key": key}
    snapshot = conn.snapshot()
    assert snapshot["saml"]["sp_private_key_set"] is True
    assert "sp_private_key" not in snapshot["saml"]
    assert "PRIVATE KEY" not in repr(snapshot)


# --- is_verified and what resets it ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "change"),
    [
        (saml_body, {"saml": {"metadata_xml": metadata_xml().replace("idp.keyhall.test", "idp2.keyhall.test")}}),
        (saml_body, {"saml": {"certificates": [certificate()]}}),
        (saml_body, {"saml": {"idp_entity_id": "https://other.example.com/saml"}}),
        (saml_body, {"saml": {"sso_url": "https://other.example.com/sso"}}),
        (oidc_body, {"oidc": {"issuer": "https://other.example.com"}}),
        (oidc_body, {"oidc": {"client_id": "another-client"}}),
        (oidc_body, {"oidc": {"jwks_url": "https://idp.example.com/keys"}}),
        # Another Entra ID tenant is another directory of people.
        (oidc_body, {"oidc": {"tenant_id": "8f2c4e1a-5b6d-4c3e-9a7f-1e2d3c4b5a69"}}),
        # A new server takes its own bind password (a secret follows its endpoint).
        (ldap_body, {"ldap": {"server": "ldap2.example.com", "bind_password": "for-ldap2"}}),
        (ldap_body, {"ldap": {"base_dn": "dc=other,dc=com"}}),
    ],
)
def test_identity_change_resets_is_verified(body: Any, change: dict[str, Any]) -> None:
    stored = verified(create(body()))
    outcome = update(stored, change)
    assert outcome.identity_changed is True
    assert outcome.connection.is_verified is False
    assert outcome.connection.verified_at is None


def test_changing_one_certificate_for_another_resets_is_verified() -> None:
    stored = verified(create(saml_body(saml={"metadata_xml": metadata_xml(), "certificates": [certificate()]})))
    outcome = update(stored, {"saml": {"certificates": [other_certificate()]}})
    assert outcome.identity_changed is True
    assert outcome.connection.is_verified is False


@pytest.mark.parametrize(
    ("body", "change"),
    [
        (saml_body, {"display_name": "Corporate SSO"}),
        (saml_body, {"saml": {"force_authn": True}}),
        (saml_body, {"saml": {"metadata_xml": metadata_xml()}}),  # the same metadata again
        (oidc_body, {"oidc": {"client_secret": "a-rotated-client-secret"}}),
        (oidc_body, {"oidc": {"scope": "openid email"}}),
        (ldap_body, {"ldap": {"bind_password": "rotated"}, "domains": ["acme.example.com"]}),
    ],
)
def test_other_changes_keep_is_verified(body: Any, change: dict[str, Any]) -> None:
    stored = verified(create(body()))
    outcome = update(stored, change)
    assert outcome.identity_changed is False
    assert outcome.connection.is_verified is True
    assert outcome.connection.verified_at == NOW


def test_needs_inspection_only_when_the_idp_side_changes() -> None:
    stored = create(saml_body())
    assert update(stored, {"display_name": "X"}).needs_inspection is False
    assert update(stored, {"saml": {"sign_requests": True}}).needs_inspection is False
    assert update(stored, {"saml": {"slo_url": "https://idp.example.com/slo"}}).needs_inspection is True

    ldap = create(ldap_body())
    # A new bind password must be tried against the directory before it is stored.
    assert update(ldap, {"ldap": {"bind_password": "rotated"}}).needs_inspection is True


# --- disable_email_password and the lock-out (409) rule --------------------------------------


def test_disable_email_password_on_an_unverified_connection_is_refused() -> None:
    stored = create(saml_body())
    error = invalid(stored, {"disable_email_password": True})
    assert error.field == "disable_email_password"
    assert error.details["field"] == "disable_email_password"
    assert "is_verified" in error.message


def test_disable_email_password_on_a_verified_connection_is_allowed() -> None:
    stored = verified(create(saml_body()))
    conn = update(stored, {"disable_email_password": True}).connection
    assert conn.disable_email_password is True
    assert conn.is_verified is True


def test_identity_change_while_password_login_is_disabled_is_a_conflict() -> None:
    stored = verified(create(oidc_body()), password_login_disabled=True)
    error = conflict(stored, {"oidc": {"issuer": "https://other.example.com"}})
    assert error.details["rule"] == "identity_change_while_password_disabled"
    assert "disable_email_password" in error.message

    error = conflict(stored, {"oidc": {"client_id": "another"}, "disable_email_password": True})
    assert error.details["rule"] == "identity_change_while_password_disabled"


def test_identity_change_is_allowed_when_the_same_input_turns_password_login_back_on() -> None:
    stored = verified(create(saml_body()), password_login_disabled=True)
    outcome = update(stored, {"saml": {"certificates": [certificate()]}, "disable_email_password": False})
    assert outcome.identity_changed is True
    assert outcome.connection.is_verified is False
    assert outcome.connection.disable_email_password is False


def test_deactivation_while_password_login_is_disabled_is_a_conflict() -> None:
    stored = verified(create(saml_body()), password_login_disabled=True)
    error = conflict(stored, {"status": "inactive"})
    assert error.details["rule"] == "deactivate_while_password_disabled"

    conn = update(stored, {"status": "inactive", "disable_email_password": False}).connection
    assert conn.status is ConnectionStatus.INACTIVE
    assert conn.disable_email_password is False


def test_harmless_changes_while_password_login_is_disabled_pass() -> None:
    stored = verified(create(saml_body()), password_login_disabled=True)
    conn = update(stored, {"display_name": "SSO", "saml": {"force_authn": True},
                           "disable_email_password": True}).connection
    assert conn.disable_email_password is True
    assert conn.is_verified is True
    assert conn.display_name == "SSO"


def test_deactivating_an_unlocked_connection_is_fine() -> None:
    stored = verified(create(saml_body()))
    assert update(stored, {"status": "inactive"}).connection.status is ConnectionStatus.INACTIVE


# --- protocol and provider after creation ----------------------------------------------------


def test_protocol_cannot_change() -> None:
    stored = create(oidc_body())
    error = invalid(stored, {"protocol": "saml", "saml": {"metadata_xml": metadata_xml()}})
    assert error.field == "protocol"
    # Naming the same protocol again is not a change.
    assert update(stored, {"protocol": "oidc", "display_name": "x"}).connection.protocol is Protocol.OIDC


@pytest.mark.parametrize(
    ("body", "other", "block"),
    [
        (oidc_body, "saml", {"metadata_xml": "<x/>"}),
        (oidc_body, "ldap", {"server": "ldap.example.com", "base_dn": "dc=x"}),
        (saml_body, "oidc", {"client_id": "x"}),
        (ldap_body, "saml", {"metadata_xml": "<x/>"}),
    ],
)
def test_another_protocols_block_is_refused(body: Any, other: str, block: dict[str, Any]) -> None:
    stored = create(body())
    error = invalid(stored, {other: block})
    assert error.field == other


def test_another_protocols_block_is_refused_on_creation() -> None:
    error = invalid(None, saml_body(ldap={"server": "ldap.example.com", "base_dn": "dc=x"}))
    assert error.field == "ldap"


def test_provider_change_must_still_offer_the_protocol() -> None:
    stored = create(ldap_body())
    error = invalid(stored, {"provider": "azure_ad"})
    assert error.field == "provider"

    saml = create(saml_body())
    assert update(saml, {"provider": "okta"}).connection.provider is Provider.OKTA


# --- domains ---------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["gmail.com", "GMAIL.COM.", "@outlook.com", "yahoo.com"])
def test_public_email_domain_is_refused(domain: str) -> None:
    error = invalid(None, saml_body(domains=["acme.example.com", domain]))
    assert error.field == "domains"
    assert "public email domain" in error.message


def test_domains_are_normalized_and_deduplicated() -> None:
    conn = create(saml_body(domains=["Acme.Example.COM", "acme.example.com.", "@acme.example.com",
                                     " beta.example.org ", "BETA.example.org", "bücher.example.com"]))
    assert conn.domains == ["acme.example.com", "beta.example.org", "xn--bcher-kva.example.com"]


@pytest.mark.parametrize("domain", ["not a domain", "localhost", "acme..example.com", "-acme.example.com",
                                    "http://acme.example.com", "acme.example.com/path"])
def test_invalid_domain_is_refused_naming_its_position(domain: str) -> None:
    error = invalid_input(saml_body(domains=["acme.example.com", domain]))
    assert error.field == "domains[1]"


def test_domains_can_be_replaced_and_cleared() -> None:
    stored = create(saml_body(domains=["acme.example.com"]))
    assert update(stored, {"domains": ["beta.example.com"]}).connection.domains == ["beta.example.com"]
    assert update(stored, {"domains": []}).connection.domains == []
    assert update(stored, {"display_name": "x"}).connection.domains == ["acme.example.com"]


def test_at_most_100_domains() -> None:
    domains = [f"d{i}.example.com" for i in range(100)]
    assert len(create(saml_body(domains=domains)).domains) == 100
    assert invalid_input(saml_body(domains=[*domains, "d100.example.com"])).field == "domains"


# --- input limits ----------------------------------------------------------------------------


def test_name_is_1_to_128_characters() -> None:
    assert create(saml_body(name="n" * 128)).name == "n" * 128
    assert create(saml_body(name="n")).name == "n"
    assert invalid_input(saml_body(name="n" * 129)).field == "name"
    assert invalid_input(saml_body(name="")).field == "name"
    assert invalid_input(saml_body(name="   ")).field == "name"


def test_display_name_is_at_most_64_characters() -> None:
    assert create(saml_body(display_name="d" * 64)).display_name == "d" * 64
    assert invalid_input(saml_body(display_name="d" * 65)).field == "display_name"


def test_display_name_null_clears_it_on_update() -> None:
    stored = create(saml_body(display_name="Corporate SSO"))
    assert update(stored, {"display_name": None}).connection.display_name is None


def test_contacts_are_1_to_10_valid_emails() -> None:
    ten = [f"it{i}@acme.example.com" for i in range(10)]
    assert create(saml_body(contacts=ten)).contacts == ten
    assert create(saml_body(contacts=["it@acme.example.com"])).contacts == ["it@acme.example.com"]
    assert invalid_input(saml_body(contacts=[*ten, "it10@acme.example.com"])).field == "contacts"
    assert invalid_input(saml_body(contacts=[])).field == "contacts"
    assert invalid_input(saml_body(contacts=["it@acme.example.com", "not-an-email"])).field == "contacts[1]"


def test_contacts_null_clears_them_on_update() -> None:
    stored = create(saml_body(contacts=["it@acme.example.com"]))
    assert update(stored, {"contacts": None}).connection.contacts == []


def test_text_record_is_1_to_40_characters() -> None:
    assert create(saml_body(text_record="t" * 40)).text_record == "t" * 40
    assert invalid_input(saml_body(text_record="t" * 41)).field == "text_record"
    assert invalid_input(saml_body(text_record="")).field == "text_record"


def test_at_most_100_group_mappings() -> None:
    mappings = [{"idp_group": f"idp-{i}", "group": f"app-{i}"} for i in range(100)]
    assert create(saml_body(group_mappings=mappings)).group_mappings == mappings
    too_many = [*mappings, {"idp_group": "idp-100", "group": "app-100"}]
    assert invalid_input(saml_body(group_mappings=too_many)).field == "group_mappings"
    assert invalid_input(saml_body(group_mappings=[{"idp_group": "a"}])).field == "group_mappings[0].group"


def test_enumerations_are_closed() -> None:
    assert invalid_input(saml_body(status="paused")).field == "status"
    assert invalid_input(saml_body(provider="ping")).field == "provider"
    assert invalid_input(saml_body(user_provisioning="sometimes")).field == "user_provisioning"
    assert invalid_input(saml_body(protocol="kerberos")).field == "protocol"


def test_unknown_fields_are_refused() -> None:
    error = invalid_input(saml_body(colour="blue"))
    assert error.field == "colour"
    assert "not a known field" in error.message


# --- URLs the owner registers at the IdP -----------------------------------------------------


def test_oidc_urls() -> None:
    conn = create(oidc_body())
    urls = connection_urls(PUBLIC_URL + "/", conn)
    assert urls == {"redirect_uri": f"{PUBLIC_URL}/sso/{conn.id}/oidc/callback", "acs_url": None,
                    "sp_metadata_url": None}


def test_oidc_redirect_uri_override() -> None:
    conn = create(oidc_body(oidc={"issuer": "https://idp.example.com", "client_id": "k",
                                  "redirect_uri": "https://app.example.com/callback"}))
    assert connection_urls(PUBLIC_URL, conn)["redirect_uri"] == "https://app.example.com/callback"


def test_saml_urls_and_sp_entity_id() -> None:
    conn = create(saml_body())
    urls = connection_urls(PUBLIC_URL, conn)
    assert urls == {
        "redirect_uri": None,
        "acs_url": f"{PUBLIC_URL}/sso/{conn.id}/saml/acs",
        "sp_metadata_url": f"{PUBLIC_URL}/sso/{conn.id}/saml/metadata",
    }
    assert sp_entity_id(PUBLIC_URL + "/", conn) == urls["sp_metadata_url"]

    configured = create(saml_body(saml={"metadata_xml": metadata_xml(), "sp_entity_id": "urn:acme:keyhall"}))
    assert sp_entity_id(PUBLIC_URL, configured) == "urn:acme:keyhall"


def test_ldap_has_no_urls() -> None:
    conn = create(ldap_body())
    assert connection_urls(PUBLIC_URL, conn) == {"redirect_uri": None, "acs_url": None, "sp_metadata_url": None}
