"""Contract tests for the Keycard dialect (``/organizations/{organization_id}/sso-connection``), seed 002.

The page's ``enable`` example is replayed with its identifier replaced by a real OpenID
provider's issuer (the example's ``"x"`` is not a URL, and Keyhall checks an issuer by
discovery: that case is a documented 400), every response field is checked by name and type
against the page, and ``protocols`` is compared with the provider's own discovery document.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyhall.core.connection_service import mark_verified
from tests.support.api import Keyhall, Tenant, auth
from tests.support.oidc_idp import OidcIdp

SECRET = "keycard-client-secret-4242"
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SAML_METADATA = Path(__file__).parents[2] / "fixtures" / "saml" / "metadata-valid.xml"
RESPONSE_KEYS = {"id", "client_id", "client_secret_set", "created_at", "identifier", "updated_at", "permissions",
                 "protocols"}
OAUTH2_KEYS = {"authorization_endpoint", "code_challenge_methods_supported", "jwks_uri", "registration_endpoint",
               "scopes_supported", "token_endpoint"}


def url(org: str) -> str:
    return f"/organizations/{org}/sso-connection"


def discovery(idp: OidcIdp) -> dict[str, Any]:
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        document: dict[str, Any] = client.get(idp.discovery_url).json()
    return document


def enable(keyhall: Keyhall, tenant: Tenant, body: dict[str, Any], expected: int = 201) -> dict[str, Any]:
    response = keyhall.client.post(url(tenant.slug), json=body, headers=auth(tenant.owner))
    assert response.status_code == expected, response.text
    data: dict[str, Any] = response.json()
    return data


def assert_page_shape(obj: dict[str, Any]) -> None:
    """Every field of the page's response, by name and type."""
    assert set(obj) == RESPONSE_KEYS
    assert UUID_RE.match(obj["id"])
    assert isinstance(obj["client_id"], str)
    assert isinstance(obj["client_secret_set"], bool)
    assert isinstance(obj["identifier"], str)
    assert 1 <= len(obj["identifier"]) <= 2048
    assert ISO_MS_Z.match(obj["created_at"]), obj["created_at"]
    assert ISO_MS_Z.match(obj["updated_at"]), obj["updated_at"]
    assert obj["permissions"].keys() == {"organizations", "users"}
    assert obj["permissions"]["organizations"].keys() == {"read", "update"}
    assert obj["permissions"]["users"].keys() == {"read", "list"}
    for group in obj["permissions"].values():
        assert all(isinstance(v, bool) for v in group.values())
    assert obj["protocols"].keys() == {"oauth2", "openid"}
    assert obj["protocols"]["oauth2"].keys() == OAUTH2_KEYS
    assert obj["protocols"]["openid"].keys() == {"userinfo_endpoint"}


def stored_secrets(keyhall: Keyhall, tenant: Tenant, connection_id: str) -> dict[str, str]:
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, connection_id)
        assert stored is not None
        return dict(stored.secrets)


def test_page_example_enables_sso_and_answers_the_documented_shape(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Page")
    body = {"client_id": "client_id", "identifier": oidc_idp.issuer}
    response = keyhall.client.post(url(tenant.slug), json=body, headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    created = response.json()
    assert_page_shape(created)
    assert created["client_id"] == "client_id"
    assert created["identifier"] == oidc_idp.issuer
    assert created["client_secret_set"] is False
    assert created["permissions"] == {"organizations": {"read": True, "update": True},
                                      "users": {"read": True, "list": True}}
    found = discovery(oidc_idp)
    assert created["protocols"] == {
        "oauth2": {name: found.get(name) for name in OAUTH2_KEYS},
        "openid": {"userinfo_endpoint": found["userinfo_endpoint"]},
    }
    # The real provider publishes all of them; the page shows strings and lists of strings.
    assert all(isinstance(created["protocols"]["oauth2"][n], str)
               for n in ("authorization_endpoint", "jwks_uri", "registration_endpoint", "token_endpoint"))
    assert "S256" in created["protocols"]["oauth2"]["code_challenge_methods_supported"]
    assert "openid" in created["protocols"]["oauth2"]["scopes_supported"]

    read = keyhall.client.get(url(tenant.id), headers=auth(tenant.owner))
    assert read.status_code == 200
    assert read.json() == created


def test_enabling_again_updates_in_place(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Again")
    first = enable(keyhall, tenant, {"client_id": "one", "identifier": oidc_idp.issuer, "client_secret": SECRET})
    assert first["client_secret_set"] is True
    assert stored_secrets(keyhall, tenant, first["id"]) == {"client_secret": SECRET}

    again = enable(keyhall, tenant, {"client_id": "two", "identifier": oidc_idp.issuer}, expected=200)
    assert again["id"] == first["id"]
    assert again["client_id"] == "two"
    assert again["created_at"] == first["created_at"]
    # Enabling defines the connection by the fields sent: no client_secret, none kept.
    assert again["client_secret_set"] is False
    assert stored_secrets(keyhall, tenant, first["id"]) == {}
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections", headers=auth(tenant.owner)).json()
    assert [c["id"] for c in native["data"]] == [first["id"]]
    org = keyhall.client.get(f"/v1/organizations/{tenant.slug}", headers=auth(tenant.owner)).json()
    assert org["default_connection_id"] == first["id"]


def test_patch_changes_only_what_is_sent(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Patch")
    created = enable(keyhall, tenant, {"client_id": "cid", "identifier": oidc_idp.issuer})
    response = keyhall.client.patch(url(tenant.slug), json={"client_secret": SECRET}, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    patched = response.json()
    assert_page_shape(patched)
    assert patched["client_secret_set"] is True
    assert patched["client_id"] == "cid"
    assert patched["identifier"] == oidc_idp.issuer
    assert SECRET not in response.text
    assert stored_secrets(keyhall, tenant, created["id"]) == {"client_secret": SECRET}

    response = keyhall.client.patch(url(tenant.slug), json={"client_id": "renamed"}, headers=auth(tenant.owner))
    assert response.json()["client_id"] == "renamed"
    assert response.json()["client_secret_set"] is True
    assert stored_secrets(keyhall, tenant, created["id"]) == {"client_secret": SECRET}


def test_viewer_reads_with_its_own_permissions_but_cannot_write(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Roles")
    body = {"client_id": "cid", "identifier": oidc_idp.issuer}
    for token in (tenant.viewer, tenant.admin):
        response = keyhall.client.post(url(tenant.slug), json=body, headers=auth(token))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    created = enable(keyhall, tenant, body)
    read = keyhall.client.get(url(tenant.slug), headers=auth(tenant.viewer))
    assert read.status_code == 200
    assert read.json()["permissions"] == {"organizations": {"read": True, "update": False},
                                          "users": {"read": True, "list": True}}
    response = keyhall.client.patch(url(tenant.slug), json={"client_id": "x"}, headers=auth(tenant.viewer))
    assert response.status_code == 403
    assert keyhall.client.delete(url(tenant.slug), headers=auth(tenant.viewer)).status_code == 403
    # An owner may let admins configure SSO: the admin's permissions say so.
    keyhall.client.patch(f"/v1/organizations/{tenant.slug}", json={"admins_may_configure_sso": True},
                         headers=auth(tenant.owner))
    read = keyhall.client.get(url(tenant.slug), headers=auth(tenant.admin))
    assert read.json()["permissions"]["organizations"]["update"] is True
    assert read.json()["id"] == created["id"]


def test_credentials_are_required(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Keycard Auth")
    for headers in ({}, auth("kh_nope.nope"), {"Authorization": "Basic Zm9vOmJhcg=="}):
        for method in ("get", "post", "patch", "delete"):
            kwargs: dict[str, Any] = {"headers": headers}
            if method in ("post", "patch"):
                kwargs["json"] = {"client_id": "c", "identifier": "https://idp.example"}
            response = keyhall.client.request(method, url(tenant.slug), **kwargs)
            assert response.status_code == 401, (method, headers)
            assert response.json()["error"]["code"] == "unauthenticated"


def test_another_organization_is_404(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    mine, theirs = keyhall.tenant("Keycard Mine"), keyhall.tenant("Keycard Theirs")
    enable(keyhall, theirs, {"client_id": "theirs", "identifier": oidc_idp.issuer})
    for org in (theirs.slug, theirs.id, "no-such-organization"):
        for method in ("get", "post", "patch", "delete"):
            kwargs: dict[str, Any] = {"headers": auth(mine.owner)}
            if method in ("post", "patch"):
                kwargs["json"] = {"client_id": "hijack", "identifier": oidc_idp.issuer}
            response = keyhall.client.request(method, url(org), **kwargs)
            assert response.status_code == 404, (org, method, response.text)
            assert response.json()["error"]["code"] == "not_found"
    still = keyhall.client.get(url(theirs.slug), headers=auth(theirs.owner)).json()
    assert still["client_id"] == "theirs"


def test_disable_deletes_the_connection(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Disable")
    created = enable(keyhall, tenant, {"client_id": "cid", "identifier": oidc_idp.issuer})
    response = keyhall.client.delete(url(tenant.slug), headers=auth(tenant.owner))
    assert response.status_code == 204
    assert response.content == b""
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"headers": auth(tenant.owner)}
        if method == "patch":
            kwargs["json"] = {"client_id": "x"}
        response = keyhall.client.request(method, url(tenant.slug), **kwargs)
        assert response.status_code == 404, method
        assert "not enabled" in response.json()["error"]["message"]
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections/{created['id']}",
                                headers=auth(tenant.owner))
    assert native.status_code == 404


def test_disable_refuses_to_lock_members_out(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Lockout")
    created = enable(keyhall, tenant, {"client_id": "cid", "identifier": oidc_idp.issuer})
    with keyhall.runtime.database.unit_of_work() as uow:
        mark_verified(uow, created["id"], keyhall.runtime.clock(), None)
    native_url = f"/v1/organizations/{tenant.slug}/connections/{created['id']}"
    assert keyhall.client.patch(native_url, json={"disable_email_password": True},
                                headers=auth(tenant.owner)).status_code == 200
    response = keyhall.client.delete(url(tenant.slug), headers=auth(tenant.owner))
    assert response.status_code == 409
    assert "disable_email_password" in response.json()["error"]["message"]
    assert keyhall.client.get(url(tenant.slug), headers=auth(tenant.owner)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"client_id": "client_id", "identifier": "x"}, "identifier"),  # the page's SDK example: not a URL
        ({"client_id": "c", "identifier": ""}, "identifier"),
        ({"client_id": "c", "identifier": "https://idp.example/" + "a" * 2029}, "identifier"),  # 2049 characters
        ({"client_id": "c", "identifier": "ftp://idp.example"}, "identifier"),
        ({"client_id": "c", "identifier": None}, "identifier"),
        ({"client_id": "c"}, "identifier"),
        ({"identifier": "https://idp.example"}, "client_id"),
        ({"client_id": "", "identifier": "https://idp.example"}, "client_id"),
        ({"client_id": "x" * 256, "identifier": "https://idp.example"}, "client_id"),
        ({"client_id": 7, "identifier": "https://idp.example"}, "client_id"),
        ({"client_id": "c", "identifier": "https://idp.example", "client_secret": 7}, "client_secret"),
        ({"client_id": "c", "identifier": "https://idp.example", "id": "mine"}, "id"),
        ({"client_id": "c", "identifier": "https://idp.example", "protocol": "saml"}, "protocol"),
    ],
)
def test_bad_enable_bodies_are_400_naming_the_field(keyhall: Keyhall, body: dict[str, Any], field: str) -> None:
    tenant = keyhall.tenant("Keycard Bad")
    response = keyhall.client.post(url(tenant.slug), json=body, headers=auth(tenant.owner))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field, error
    assert error["message"].startswith(field)
    assert keyhall.client.get(url(tenant.slug), headers=auth(tenant.owner)).status_code == 404


def test_identifier_limits_are_exact(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Keycard Limits")
    at_limit = "http://127.0.0.1:9/" + "a" * (2048 - len("http://127.0.0.1:9/"))
    assert len(at_limit) == 2048
    response = keyhall.client.post(url(tenant.slug), json={"client_id": "c", "identifier": at_limit},
                                   headers=auth(tenant.owner))
    assert response.status_code == 422  # accepted by the schema, then refused by discovery
    response = keyhall.client.post(url(tenant.slug), json={"client_id": "c", "identifier": at_limit + "a"},
                                   headers=auth(tenant.owner))
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "identifier"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identifier": "x"}, "identifier"),
        ({"identifier": "a" * 2049}, "identifier"),
        ({"identifier": None}, "identifier"),
        ({"client_id": None}, "client_id"),
        ({"client_id": ""}, "client_id"),
        ({"surprise": 1}, "surprise"),
        ({"created_at": "2019-12-27T18:11:19.117Z"}, "created_at"),
    ],
)
def test_bad_patch_bodies_are_400_and_change_nothing(
    keyhall: Keyhall, oidc_idp: OidcIdp, body: dict[str, Any], field: str
) -> None:
    tenant = keyhall.tenant("Keycard Bad Patch")
    created = enable(keyhall, tenant, {"client_id": "cid", "identifier": oidc_idp.issuer, "client_secret": SECRET})
    response = keyhall.client.patch(url(tenant.slug), json=body, headers=auth(tenant.owner))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["field"] == field
    assert keyhall.client.get(url(tenant.slug), headers=auth(tenant.owner)).json() == created
    assert stored_secrets(keyhall, tenant, created["id"]) == {"client_secret": SECRET}


def test_unreachable_idp_is_422_naming_the_identifier(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Keycard Unreachable")
    response = keyhall.client.post(url(tenant.slug), json={"client_id": "c", "identifier": "http://127.0.0.1:9"},
                                   headers=auth(tenant.owner))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "fetch_failed"
    assert error["details"]["field"] == "identifier"
    assert keyhall.client.get(url(tenant.slug), headers=auth(tenant.owner)).status_code == 404


def test_organization_id_is_id_or_label_of_1_to_255_characters(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Label")
    created = enable(keyhall, tenant, {"client_id": "cid", "identifier": oidc_idp.issuer})
    assert keyhall.client.get(url(tenant.id), headers=auth(tenant.owner)).json() == created
    assert keyhall.client.get(url(tenant.id.upper()), headers=auth(tenant.owner)).json() == created
    response = keyhall.client.get(url("a" * 256), headers=auth(tenant.owner))
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "organization_id"
    assert keyhall.client.get(url("a" * 255), headers=auth(tenant.owner)).status_code == 404
    assert keyhall.client.get("/organizations//sso-connection", headers=auth(tenant.owner)).status_code == 404


def test_client_request_id_must_be_a_uuid_and_is_echoed(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Request Id")
    for bad in ("not-a-uuid", "12345", "{" + str(uuid.uuid4()) + "}"):
        response = keyhall.client.post(url(tenant.slug), json={"client_id": "c", "identifier": oidc_idp.issuer},
                                       headers={**auth(tenant.owner), "X-Client-Request-Id": bad})
        assert response.status_code == 400
        assert response.json()["error"]["details"]["field"] == "X-Client-Request-Id"
    assert keyhall.client.get(url(tenant.slug), headers=auth(tenant.owner)).status_code == 404

    request_id = str(uuid.uuid4())
    response = keyhall.client.post(url(tenant.slug), json={"client_id": "c", "identifier": oidc_idp.issuer},
                                   headers={**auth(tenant.owner), "X-Client-Request-Id": request_id})
    assert response.status_code == 201, response.text
    assert response.headers["x-client-request-id"] == request_id
    events = keyhall.client.get(f"/v1/organizations/{tenant.slug}/audit-events",
                                params={"target_id": response.json()["id"]}, headers=auth(tenant.owner)).json()
    assert [(e["action"], e["request_id"]) for e in events["data"]] == [("connection.created", request_id)]
    read = keyhall.client.get(url(tenant.slug), headers={**auth(tenant.viewer), "X-Client-Request-Id": request_id})
    assert read.headers["x-client-request-id"] == request_id


def test_an_organization_whose_default_connection_is_not_oidc(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Saml")
    saml = keyhall.client.post(f"/v1/organizations/{tenant.slug}/connections", headers=auth(tenant.owner),
                               json={"protocol": "saml", "saml": {"metadata_xml": SAML_METADATA.read_text()}})
    assert saml.status_code == 201, saml.text
    response = keyhall.client.patch(f"/v1/organizations/{tenant.slug}",
                                    json={"default_connection_id": saml.json()["id"]}, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    read = keyhall.client.get(url(tenant.slug), headers=auth(tenant.owner))
    assert read.status_code == 404
    assert "saml" in read.json()["error"]["message"]
    response = keyhall.client.post(url(tenant.slug), json={"client_id": "c", "identifier": oidc_idp.issuer},
                                   headers=auth(tenant.owner))
    assert response.status_code == 409
    assert keyhall.client.delete(url(tenant.slug), headers=auth(tenant.owner)).status_code == 404
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections", headers=auth(tenant.owner)).json()
    assert [c["protocol"] for c in native["data"]] == ["saml"]


def test_a_keycard_connection_is_native_and_visible_to_luzmo(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Keycard Cross")
    created = enable(keyhall, tenant, {"client_id": "cross", "identifier": oidc_idp.issuer, "client_secret": SECRET})
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections/{created['id']}",
                                headers=auth(tenant.owner))
    assert native.status_code == 200
    assert native.json()["oidc"]["issuer"] == created["identifier"]
    assert native.json()["oidc"]["client_id"] == "cross"
    assert native.json()["oidc"]["client_secret_set"] is True
    assert native.json()["created_at"] == created["created_at"]

    luzmo = keyhall.client.post("/0.1.0/ssoconfig", json={"action": "get", "version": "0.1.0"},
                                headers=auth(tenant.viewer))
    assert luzmo.status_code == 200
    rows = luzmo.json()["rows"]
    assert [r["id"] for r in rows] == [created["id"]]
    assert rows[0]["config"]["issuer"] == oidc_idp.issuer
    assert rows[0]["config"]["client_id"] == "cross"
    assert rows[0]["config"]["client_secret"] == "********"


def test_the_endpoints_are_described_in_openapi(keyhall: Keyhall) -> None:
    schema = keyhall.client.get("/openapi.json").json()
    assert set(schema["paths"]["/organizations/{organization_id}/sso-connection"]) == {"get", "post", "patch", "delete"}
