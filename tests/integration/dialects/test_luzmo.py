"""Contract tests for the Luzmo dialect (``POST /0.1.0/ssoconfig``), built from seed 000.

The page's request and response examples are replayed against a real OpenID provider (its URLs
stand in for the page's unreachable ``updated-oidc-provider.com``), every response field is
checked by name and type against the page, and every documented error is provoked.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyhall.core.connection_service import mark_verified
from keyhall.core.vocabulary import SECRET_MASK
from tests.support.api import Keyhall, Tenant, auth
from tests.support.oidc_idp import OidcIdp

URL = "/0.1.0/ssoconfig"
SAML_METADATA = Path(__file__).parents[2] / "fixtures" / "saml" / "metadata-valid.xml"
SECRET = "luzmo-client-secret-0815"
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
OBJECT_KEYS = {"id", "organization_id", "protocol", "config", "is_verified", "disable_email_password",
               "created_at", "updated_at"}
CONFIG_KEYS = {"client_id", "client_secret", "issuer", "authorization_url", "token_url", "user_info_url"}


def pair(token: str) -> dict[str, str]:
    """A Keyhall bearer token ``kh_<id>.<secret>`` as Luzmo's ``key``/``token`` pair."""
    key_id, secret = token.removeprefix("kh_").split(".", 1)
    return {"key": key_id, "token": secret}


def call(keyhall: Keyhall, token: str, action: str, **fields: Any) -> httpx.Response:
    body = {"action": action, "version": "0.1.0", **pair(token), **fields}
    response: httpx.Response = keyhall.client.post(URL, json=body)
    return response


def discovery(idp: OidcIdp) -> dict[str, Any]:
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        document: dict[str, Any] = client.get(idp.discovery_url).json()
    return document


def page_config(idp: OidcIdp, client_id: str = "updated-client-id", secret: str = SECRET) -> dict[str, Any]:
    """The page's ``config`` with the example IdP's URLs replaced by the real provider's."""
    found = discovery(idp)
    return {
        "client_id": client_id,
        "client_secret": secret,
        "issuer": idp.issuer,
        "authorization_url": found["authorization_endpoint"],
        "token_url": found["token_endpoint"],
        "user_info_url": found["userinfo_endpoint"],
    }


def create(keyhall: Keyhall, tenant: Tenant, config: dict[str, Any], **properties: Any) -> dict[str, Any]:
    response = call(keyhall, tenant.owner, "create",
                    properties={"protocol": "OIDC", "config": config, **properties})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def get_rows(keyhall: Keyhall, token: str, **find: Any) -> dict[str, Any]:
    response = call(keyhall, token, "get", find=find)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def assert_page_shape(obj: dict[str, Any]) -> None:
    """Every field of the page's response, by name and type."""
    assert set(obj) == OBJECT_KEYS
    assert UUID_RE.match(obj["id"])
    assert UUID_RE.match(obj["organization_id"])
    assert obj["protocol"] == "OIDC"
    assert set(obj["config"]) == CONFIG_KEYS
    assert isinstance(obj["config"]["client_id"], str)
    assert obj["config"]["client_secret"] in (SECRET_MASK, None)
    for name in ("issuer", "authorization_url", "token_url", "user_info_url"):
        assert isinstance(obj["config"][name], str), name
        assert obj["config"][name].startswith("http"), name
    assert isinstance(obj["is_verified"], bool)
    assert isinstance(obj["disable_email_password"], bool)
    assert ISO_MS_Z.match(obj["created_at"]), obj["created_at"]
    assert ISO_MS_Z.match(obj["updated_at"]), obj["updated_at"]


def stored_secrets(keyhall: Keyhall, tenant: Tenant, connection_id: str) -> dict[str, str]:
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, connection_id)
        assert stored is not None
        return dict(stored.secrets)


def test_page_example_update_is_accepted_and_answers_the_documented_shape(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Page")
    created = create(keyhall, tenant, page_config(oidc_idp, client_id="first-client-id"))
    assert_page_shape(created)
    assert created["organization_id"] == tenant.id

    # The page's request: update the configuration's config (and leave password sign-in on).
    config = page_config(oidc_idp)
    response = call(keyhall, tenant.owner, "update", id=created["id"],
                    properties={"protocol": "OIDC", "config": config, "disable_email_password": False})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert_page_shape(updated)
    assert updated["id"] == created["id"]
    assert updated["config"] == {**config, "client_secret": SECRET_MASK}
    assert updated["is_verified"] is False
    assert updated["disable_email_password"] is False
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] >= created["updated_at"]
    assert SECRET not in response.text
    assert stored_secrets(keyhall, tenant, created["id"]) == {"client_secret": SECRET}


def test_endpoints_not_given_are_the_discovered_ones(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Discovered")
    created = create(keyhall, tenant, {"client_id": "cid", "issuer": oidc_idp.issuer})
    found = discovery(oidc_idp)
    assert created["config"] == {
        "client_id": "cid", "client_secret": None, "issuer": found["issuer"],
        "authorization_url": found["authorization_endpoint"], "token_url": found["token_endpoint"],
        "user_info_url": found["userinfo_endpoint"],
    }
    assert_page_shape(created)


def test_read_modify_write_with_the_mask_keeps_the_secret_and_the_verification(
    keyhall: Keyhall, oidc_idp: OidcIdp
) -> None:
    tenant = keyhall.tenant("Luzmo Mask")
    created = create(keyhall, tenant, {"client_id": "cid", "client_secret": SECRET, "issuer": oidc_idp.issuer})
    with keyhall.runtime.database.unit_of_work() as uow:
        mark_verified(uow, created["id"], keyhall.runtime.clock(), None)
    row = get_rows(keyhall, tenant.owner, where={"id": created["id"]})["rows"][0]
    assert row["config"]["client_secret"] == SECRET_MASK

    # Send back what was read (mask and discovered endpoints included), turning password sign-in off.
    response = call(keyhall, tenant.owner, "update", id=created["id"],
                    properties={"config": row["config"], "disable_email_password": True})
    assert response.status_code == 200, response.text
    assert response.json()["is_verified"] is True
    assert response.json()["disable_email_password"] is True
    assert stored_secrets(keyhall, tenant, created["id"]) == {"client_secret": SECRET}

    response = call(keyhall, tenant.owner, "update", id=created["id"],
                    properties={"config": {"client_secret": "rotated"}})
    assert response.status_code == 200, response.text
    assert stored_secrets(keyhall, tenant, created["id"]) == {"client_secret": "rotated"}
    response = call(keyhall, tenant.owner, "update", id=created["id"],
                    properties={"config": {"client_secret": None}})
    assert response.json()["config"]["client_secret"] is None
    assert stored_secrets(keyhall, tenant, created["id"]) == {}


def test_is_verified_is_read_only_and_password_disable_needs_verification(
    keyhall: Keyhall, oidc_idp: OidcIdp
) -> None:
    tenant = keyhall.tenant("Luzmo Verify")
    created = create(keyhall, tenant, {"client_id": "cid", "issuer": oidc_idp.issuer})

    response = call(keyhall, tenant.owner, "update", id=created["id"], properties={"is_verified": True})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"]["field"] == "properties.is_verified"
    assert "read-only" in error["message"]

    response = call(keyhall, tenant.owner, "update", id=created["id"], properties={"disable_email_password": True})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"]["field"] == "properties.disable_email_password"
    assert "verified" in error["message"]
    response = call(keyhall, tenant.owner, "create", properties={
        "protocol": "OIDC", "config": {"client_id": "c2", "issuer": oidc_idp.issuer}, "disable_email_password": True})
    assert response.status_code == 400
    assert "verified" in response.json()["error"]["message"]

    with keyhall.runtime.database.unit_of_work() as uow:
        mark_verified(uow, created["id"], keyhall.runtime.clock(), None)
    response = call(keyhall, tenant.owner, "update", id=created["id"], properties={"disable_email_password": True})
    assert response.status_code == 200, response.text
    assert response.json()["is_verified"] is True
    assert response.json()["disable_email_password"] is True
    assert get_rows(keyhall, tenant.owner)["count"] == 1  # the refused create wrote nothing

    # Trusting another client would reset is_verified and lock members out: refused ...
    response = call(keyhall, tenant.owner, "update", id=created["id"], properties={"config": {"client_id": "other"}})
    assert response.status_code == 409
    assert "disable_email_password" in response.json()["error"]["message"]
    # ... unless the same request turns password sign-in back on.
    response = call(keyhall, tenant.owner, "update", id=created["id"],
                    properties={"config": {"client_id": "other"}, "disable_email_password": False})
    assert response.status_code == 200, response.text
    assert response.json()["is_verified"] is False
    assert response.json()["config"]["client_id"] == "other"


@pytest.mark.parametrize(
    ("properties", "field", "status"),
    [
        ({"is_verified": False}, "properties.is_verified", 400),
        ({"id": str(uuid.uuid4())}, "properties.id", 400),
        ({"created_at": "2024-01-15T10:30:00.000Z"}, "properties.created_at", 400),
        ({"updated_at": "2024-01-15T11:45:00.000Z"}, "properties.updated_at", 400),
        ({"colour": "blue"}, "properties.colour", 400),
        ({"protocol": "SAML"}, "properties.protocol", 400),
        ({"config": {"colour": "blue"}}, "properties.config.colour", 400),
        ({"config": {"issuer": "not a url"}}, "properties.config.issuer", 400),
        ({"config": {"token_url": "ftp://idp.example/token"}}, "properties.config.token_url", 400),
        ({"config": {"user_info_url": "javascript:alert(1)"}}, "properties.config.user_info_url", 400),
        ({"config": {"client_id": "x" * 256}}, "properties.config.client_id", 400),
        ({"config": {"client_id": None}}, "properties.config.client_id", 400),
        ({"config": {"client_id": 7}}, "properties.config.client_id", 400),
        ({"config": None}, "properties.config", 400),
        ({"disable_email_password": "yes"}, "properties.disable_email_password", 400),
        ({"organization_id": "not-a-uuid"}, "properties.organization_id", 400),
        ({"config": {"issuer": "http://127.0.0.1:9"}}, "properties.config.issuer", 422),
    ],
)
def test_bad_properties_name_the_field_and_change_nothing(
    keyhall: Keyhall, oidc_idp: OidcIdp, properties: dict[str, Any], field: str, status: int
) -> None:
    tenant = keyhall.tenant("Luzmo Bad")
    created = create(keyhall, tenant, {"client_id": "cid", "client_secret": SECRET, "issuer": oidc_idp.issuer})
    response = call(keyhall, tenant.owner, "update", id=created["id"], properties=properties)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["details"]["field"] == field, error
    if status == 400:
        assert error["message"].startswith(field)
    assert get_rows(keyhall, tenant.owner)["rows"] == [created]


def test_only_oidc_is_supported(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Protocol")
    for protocol in ("SAML", "ldap", ""):
        response = call(keyhall, tenant.owner, "create",
                        properties={"protocol": protocol, "config": {"client_id": "c", "issuer": oidc_idp.issuer}})
        assert response.status_code == 400
        assert "protocol: only OIDC is supported" in response.json()["error"]["message"]
    response = call(keyhall, tenant.owner, "create",
                    properties={"protocol": "oidc", "config": {"client_id": "c", "issuer": oidc_idp.issuer}})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"action": "patch"}, "action"),
        ({"action": None}, "action"),
        ({"version": "0.2.0"}, "version"),
        ({"version": None}, "version"),
        ({"surprise": 1}, "surprise"),
        ({"action": "create", "id": str(uuid.uuid4())}, "id"),
        ({"action": "update", "find": {}}, "find"),
        ({"action": "get", "properties": {"config": {}}}, "properties"),
        ({"action": "create", "associations": [{"role": "Organizations", "id": str(uuid.uuid4())}]}, "associations"),
        ({"action": "update"}, "id"),
        ({"action": "create"}, "properties"),
        ({"action": "create", "properties": {"protocol": "OIDC"}}, "properties.config"),
    ],
)
def test_bad_envelopes_are_400_naming_the_field(keyhall: Keyhall, envelope: dict[str, Any], field: str) -> None:
    tenant = keyhall.tenant("Luzmo Envelope")
    body = {"action": "get", "version": "0.1.0", **pair(tenant.owner), **envelope}
    response = keyhall.client.post(URL, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field, error


def test_malformed_bodies(keyhall: Keyhall) -> None:
    response = keyhall.client.post(URL, content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "body"
    response = keyhall.client.post(URL, json=["create"])
    assert response.status_code == 400
    response = keyhall.client.post(URL, content=b"action=get", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_credentials(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Keys")
    good = pair(tenant.viewer)
    for credentials in ({"key": good["key"], "token": "wrong"}, {"key": "nope", "token": good["token"]},
                        {"key": good["key"]}, {"token": good["token"]}, {"key": "k" * 500, "token": "t" * 500}, {}):
        response = keyhall.client.post(URL, json={"action": "get", "version": "0.1.0", **credentials})
        assert response.status_code == 401, credentials
        assert response.json()["error"]["code"] == "unauthenticated"
    # A bearer token instead of the key/token pair.
    response = keyhall.client.post(URL, json={"action": "get", "version": "0.1.0"}, headers=auth(tenant.viewer))
    assert response.status_code == 200
    assert response.json() == {"count": 0, "rows": []}


def test_only_an_owner_writes(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Roles")
    config = {"client_id": "cid", "issuer": oidc_idp.issuer}
    for token in (tenant.viewer, tenant.admin):
        response = call(keyhall, token, "create", properties={"protocol": "OIDC", "config": config})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    created = create(keyhall, tenant, config)
    response = call(keyhall, tenant.viewer, "update", id=created["id"], properties={"config": {"client_id": "hijack"}})
    assert response.status_code == 403
    assert call(keyhall, tenant.viewer, "delete", id=created["id"]).status_code == 403
    assert get_rows(keyhall, tenant.viewer)["rows"] == [created]


def test_another_organization_is_404(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    mine, theirs = keyhall.tenant("Luzmo Mine"), keyhall.tenant("Luzmo Theirs")
    config = {"client_id": "cid", "issuer": oidc_idp.issuer}
    theirs_conn = create(keyhall, theirs, config)

    response = call(keyhall, mine.owner, "create",
                    properties={"organization_id": theirs.id, "protocol": "OIDC", "config": config})
    assert response.status_code == 404
    response = call(keyhall, mine.owner, "update", id=theirs_conn["id"], properties={"config": {"client_id": "x"}})
    assert response.status_code == 404
    response = call(keyhall, mine.owner, "update", id=theirs_conn["id"],
                    properties={"organization_id": theirs.id, "config": {"client_id": "x"}})
    assert response.status_code == 404
    assert call(keyhall, mine.owner, "delete", id=theirs_conn["id"]).status_code == 404
    assert get_rows(keyhall, mine.owner, where={"id": theirs_conn["id"]}) == {"count": 0, "rows": []}
    assert get_rows(keyhall, mine.owner, where={"organization_id": theirs.id}) == {"count": 0, "rows": []}
    assert get_rows(keyhall, theirs.owner)["rows"] == [theirs_conn]


def test_get_filters_and_pages_over_oidc_connections_only(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Get")
    ids = [create(keyhall, tenant, {"client_id": f"c{i}", "issuer": oidc_idp.issuer})["id"] for i in range(3)]
    saml = keyhall.client.post(f"/v1/organizations/{tenant.slug}/connections", headers=auth(tenant.owner),
                               json={"protocol": "saml", "saml": {"metadata_xml": SAML_METADATA.read_text()}})
    assert saml.status_code == 201, saml.text
    with keyhall.runtime.database.unit_of_work() as uow:
        mark_verified(uow, ids[1], keyhall.runtime.clock(), None)

    everything = get_rows(keyhall, tenant.viewer)
    assert everything["count"] == 3
    assert sorted(row["id"] for row in everything["rows"]) == sorted(ids)
    for row in everything["rows"]:
        assert_page_shape(row)
    assert [r["id"] for r in get_rows(keyhall, tenant.viewer, where={"is_verified": True})["rows"]] == [ids[1]]
    assert get_rows(keyhall, tenant.viewer, where={"is_verified": False})["count"] == 2
    assert get_rows(keyhall, tenant.viewer, where={"id": ids[2].upper()})["rows"][0]["id"] == ids[2]
    assert get_rows(keyhall, tenant.viewer, where={"protocol": "OIDC", "organization_id": tenant.id})["count"] == 3
    assert get_rows(keyhall, tenant.viewer, where={"protocol": "SAML"})["count"] == 0
    assert get_rows(keyhall, tenant.viewer, where={"disable_email_password": True})["count"] == 0
    page = get_rows(keyhall, tenant.viewer, limit=2, offset=1)
    assert page["count"] == 3
    assert [r["id"] for r in page["rows"]] == [r["id"] for r in everything["rows"]][1:3]

    saml_id = saml.json()["id"]
    assert get_rows(keyhall, tenant.viewer, where={"id": saml_id})["count"] == 0
    assert call(keyhall, tenant.owner, "update", id=saml_id, properties={}).status_code == 404
    assert call(keyhall, tenant.owner, "delete", id=saml_id).status_code == 404

    bad_finds = [({"where": {"id": {"in": ids}}}, "find.where.id"), ({"where": {"name": "x"}}, "find.where.name"),
                 ({"where": {"is_verified": "true"}}, "find.where.is_verified"), ({"limit": 0}, "find.limit"),
                 ({"offset": -1}, "find.offset"), ({"order": [["created_at", "asc"]]}, "find.order")]
    for find, field in bad_finds:
        response = call(keyhall, tenant.viewer, "get", find=find)
        assert response.status_code == 400, find
        assert response.json()["error"]["details"]["field"] == field


def test_delete_answers_the_deleted_configuration_and_removes_it(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Delete")
    created = create(keyhall, tenant, {"client_id": "cid", "issuer": oidc_idp.issuer})
    # The SDKs send an empty ``properties`` with delete.
    response = call(keyhall, tenant.owner, "delete", id=created["id"], properties={})
    assert response.status_code == 200, response.text
    assert response.json() == created
    assert get_rows(keyhall, tenant.owner) == {"count": 0, "rows": []}
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections/{created['id']}",
                                headers=auth(tenant.owner))
    assert native.status_code == 404
    assert call(keyhall, tenant.owner, "delete", id=created["id"]).status_code == 404


def test_instance_admin_key_names_the_organization(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Admin")
    admin = keyhall.instance_token
    config = {"client_id": "cid", "issuer": oidc_idp.issuer}
    response = call(keyhall, admin, "create", properties={"protocol": "OIDC", "config": config})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "properties.organization_id"
    response = call(keyhall, admin, "create", associations={},
                    properties={"organization_id": tenant.id, "protocol": "OIDC", "config": config})
    assert response.status_code == 200, response.text
    assert response.json()["organization_id"] == tenant.id
    response = call(keyhall, admin, "get")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "find.where.organization_id"
    assert get_rows(keyhall, admin, where={"organization_id": tenant.id})["count"] == 1
    assert get_rows(keyhall, admin, where={"organization_id": str(uuid.uuid4())})["count"] == 0


def test_a_luzmo_configuration_is_a_native_connection(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Luzmo Native")
    created = create(keyhall, tenant, page_config(oidc_idp))
    native = keyhall.client.get(f"/v1/organizations/{tenant.id}/connections/{created['id']}",
                                headers=auth(tenant.owner))
    assert native.status_code == 200
    body = native.json()
    assert body["protocol"] == "oidc"
    assert body["oidc"]["issuer"] == created["config"]["issuer"] == oidc_idp.issuer
    assert body["oidc"]["client_id"] == created["config"]["client_id"]
    assert body["oidc"]["client_secret_set"] is True
    assert body["created_at"] == created["created_at"]
    events = keyhall.client.get(f"/v1/organizations/{tenant.slug}/audit-events", params={"target_id": created["id"]},
                                headers=auth(tenant.owner)).json()["data"]
    assert [e["action"] for e in events] == ["connection.created"]
    assert SECRET not in str(events)



def test_the_endpoint_is_described_in_openapi(keyhall: Keyhall) -> None:
    schema = keyhall.client.get("/openapi.json").json()
    assert "post" in schema["paths"][URL]
