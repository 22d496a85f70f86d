"""The native connections API on a real database (SQLite or PostgreSQL) and real IdPs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from keyhall.core.connection_service import mark_verified
from keyhall.core.vocabulary import SECRET_MASK
from tests.support.api import Keyhall, Tenant, auth
from tests.support.oidc_idp import OidcIdp

FIXTURES = Path(__file__).parent.parent / "fixtures" / "saml"
SECRET = "very-secret-client-secret-value-4711"


def saml_body(name: str = "corp-saml", **extra: Any) -> dict[str, Any]:
    body = {
        "protocol": "saml",
        "name": name,
        "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()},
    }
    body.update(extra)
    return body


def oidc_body(idp: OidcIdp, name: str = "corp-oidc", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "protocol": "oidc",
        "name": name,
        "display_name": "Corporate SSO",
        "oidc": {"issuer": idp.issuer, "client_id": "keyhall-client", "client_secret": SECRET},
        "domains": ["acme.example"],
        "contacts": ["it@acme.example"],
    }
    body.update(extra)
    return body


def connections_url(tenant: Tenant, suffix: str = "") -> str:
    return f"/v1/organizations/{tenant.slug}/connections{suffix}"


def create(keyhall: Keyhall, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = keyhall.client.post(connections_url(tenant), json=body, headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def test_oidc_connection_is_validated_against_the_real_idp_and_read_back(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Oidc Readback")
    created = create(keyhall, tenant, oidc_body(oidc_idp))

    assert created["protocol"] == "oidc"
    assert created["oidc"]["issuer"] == oidc_idp.issuer
    assert created["oidc"]["client_secret_set"] is True
    assert "client_secret" not in created["oidc"]
    assert created["is_verified"] is False
    assert created["redirect_uri"] == f"http://keyhall.test/sso/{created['id']}/oidc/callback"
    assert created["discovered"]["token_endpoint"] == f"{oidc_idp.base_url}/token"
    assert created["discovered"]["jwks"]["key_count"] >= 1

    response = keyhall.client.get(connections_url(tenant, f"/{created['id']}"), headers=auth(tenant.viewer))
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json() == created
    assert SECRET not in response.text


def test_wrong_issuer_is_422_and_nothing_is_stored(keyhall: Keyhall, oidc_idp_wrong_issuer: OidcIdp) -> None:
    tenant = keyhall.tenant("Wrong Issuer")
    body = oidc_body(oidc_idp_wrong_issuer)
    body["oidc"]["issuer"] = oidc_idp_wrong_issuer.base_url  # reached at 127.0.0.1, calls itself localhost
    response = keyhall.client.post(connections_url(tenant), json=body, headers=auth(tenant.owner))
    assert response.status_code == 422
    error = response.json()["error"]
    assert "localhost" in error["message"]
    assert error["details"]["field"] == "oidc.issuer"
    listing = keyhall.client.get(connections_url(tenant), headers=auth(tenant.owner)).json()
    assert listing["data"] == []
    events = keyhall.client.get(f"/v1/organizations/{tenant.slug}/audit-events?action=connection.created",
                                headers=auth(tenant.owner)).json()
    assert events["data"] == []


def test_unreachable_idp_is_422(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Unreachable")
    body = {"protocol": "oidc", "oidc": {"issuer": "http://127.0.0.1:9", "client_id": "x"}}
    response = keyhall.client.post(connections_url(tenant), json=body, headers=auth(tenant.owner))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "fetch_failed"


def test_saml_metadata_is_parsed_and_certificate_expiry_reported(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Saml Meta")
    created = create(keyhall, tenant, saml_body())
    assert created["acs_url"] == f"http://keyhall.test/sso/{created['id']}/saml/acs"
    assert created["sp_metadata_url"] == f"http://keyhall.test/sso/{created['id']}/saml/metadata"
    assert created["discovered"]["idp_entity_id"] == "https://idp.keyhall.test/saml/metadata"
    assert created["discovered"]["certificate_days_left"] > 365


def test_malformed_saml_metadata_is_422(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Saml Bad")
    body = saml_body()
    body["saml"]["metadata_xml"] = (FIXTURES / "metadata-malformed.xml").read_text()
    response = keyhall.client.post(connections_url(tenant), json=body, headers=auth(tenant.owner))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"].startswith("saml.")


def test_another_organizations_connection_is_404(keyhall: Keyhall) -> None:
    mine, theirs = keyhall.tenant("Tenancy Mine"), keyhall.tenant("Tenancy Theirs")
    conn = create(keyhall, theirs, saml_body())
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"headers": auth(mine.owner)}
        if method == "patch":
            kwargs["json"] = {"display_name": "hijack"}
        # My key, their organization in the path: the organization is invisible to me.
        response = keyhall.client.request(method, connections_url(theirs, f"/{conn['id']}"), **kwargs)
        assert response.status_code == 404, (method, response.text)
        # My organization in the path, their connection id: also absent.
        response = keyhall.client.request(method, connections_url(mine, f"/{conn['id']}"), **kwargs)
        assert response.status_code == 404, (method, response.text)
    still = keyhall.client.get(connections_url(theirs, f"/{conn['id']}"), headers=auth(theirs.owner)).json()
    assert still["display_name"] is None


def test_roles(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Roles")
    for token in (tenant.viewer, tenant.admin):
        response = keyhall.client.post(connections_url(tenant), json=saml_body(), headers=auth(token))
        assert response.status_code == 403
    assert keyhall.client.get(connections_url(tenant), headers=auth(tenant.viewer)).status_code == 200
    assert keyhall.client.get(connections_url(tenant)).status_code == 401
    assert keyhall.client.get(connections_url(tenant), headers=auth("kh_nope.nope")).status_code == 401

    # An owner can let admins configure SSO.
    response = keyhall.client.patch(f"/v1/organizations/{tenant.slug}", json={"admins_may_configure_sso": True},
                                    headers=auth(tenant.owner))
    assert response.status_code == 200
    response = keyhall.client.post(connections_url(tenant), json=saml_body(), headers=auth(tenant.admin))
    assert response.status_code == 201


def test_secret_mask_round_trip_keeps_the_secret(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Mask")
    created = create(keyhall, tenant, oidc_body(oidc_idp))
    url = connections_url(tenant, f"/{created['id']}")
    response = keyhall.client.patch(url, json={"oidc": {"client_secret": SECRET_MASK, "scope": "openid email"}},
                                    headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    assert response.json()["oidc"]["scope"] == "openid email"
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, created["id"])
        assert stored is not None
        assert stored.secrets == {"client_secret": SECRET}

    response = keyhall.client.patch(url, json={"oidc": {"client_secret": "rotated-secret"}}, headers=auth(tenant.owner))
    assert response.status_code == 200
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, created["id"])
        assert stored is not None
        assert stored.secrets == {"client_secret": "rotated-secret"}


def test_secrets_never_reach_responses_logs_or_the_audit_trail(
    keyhall: Keyhall, oidc_idp: OidcIdp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = keyhall.tenant("No Leaks")
    created = create(keyhall, tenant, oidc_body(oidc_idp))
    url = connections_url(tenant, f"/{created['id']}")
    texts = [
        keyhall.client.get(url, headers=auth(tenant.owner)).text,
        keyhall.client.get(connections_url(tenant), headers=auth(tenant.owner)).text,
        keyhall.client.patch(url, json={"oidc": {"client_secret": SECRET + "-2"}}, headers=auth(tenant.owner)).text,
        keyhall.client.get(f"/v1/organizations/{tenant.slug}/audit-events", headers=auth(tenant.owner)).text,
    ]
    for text in texts:
        assert SECRET not in text
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    with keyhall.runtime.database.engine.connect() as conn:
        blobs = [row[0] for row in conn.exec_driver_sql("SELECT sealed_secrets FROM connections")]
    assert blobs
    assert all(SECRET not in (blob or "") for blob in blobs)


def test_is_verified_is_read_only_and_password_disable_needs_verification(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Verify Rules")
    created = create(keyhall, tenant, saml_body())
    url = connections_url(tenant, f"/{created['id']}")

    response = keyhall.client.patch(url, json={"is_verified": True}, headers=auth(tenant.owner))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "is_verified: is read-only"

    response = keyhall.client.patch(url, json={"disable_email_password": True}, headers=auth(tenant.owner))
    assert response.status_code == 400
    assert "verified" in response.json()["error"]["message"]

    with keyhall.runtime.database.unit_of_work() as uow:
        mark_verified(uow, created["id"], keyhall.runtime.clock(), None)
    response = keyhall.client.patch(url, json={"disable_email_password": True}, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    assert response.json()["is_verified"] is True

    # Changing which IdP is trusted would reset is_verified and lock members out: 409 ...
    other_metadata = (FIXTURES / "metadata-azure-ad.xml").read_text()
    response = keyhall.client.patch(url, json={"saml": {"metadata_xml": other_metadata}}, headers=auth(tenant.owner))
    assert response.status_code == 409
    assert "disable_email_password" in response.json()["error"]["message"]
    # ... unless the same request turns password sign-in back on.
    response = keyhall.client.patch(
        url, json={"saml": {"metadata_xml": other_metadata}, "disable_email_password": False},
        headers=auth(tenant.owner),
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_verified"] is False
    assert response.json()["disable_email_password"] is False


def test_if_match_and_etag(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Etags")
    created = create(keyhall, tenant, saml_body())
    url = connections_url(tenant, f"/{created['id']}")
    ok = keyhall.client.patch(url, json={"display_name": "One"}, headers={**auth(tenant.owner), "If-Match": '"1"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"2"'
    stale = keyhall.client.patch(url, json={"display_name": "Two"}, headers={**auth(tenant.owner), "If-Match": '"1"'})
    assert stale.status_code == 412
    assert keyhall.client.get(url, headers=auth(tenant.owner)).json()["display_name"] == "One"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"display_name": "x" * 65}, "display_name"),
        ({"status": "paused"}, "status"),
        ({"contacts": []}, "contacts"),
        ({"contacts": [f"a{i}@acme.example" for i in range(11)]}, "contacts"),
        ({"contacts": ["not-an-email"]}, "contacts[0]"),
        ({"domains": ["not a domain"]}, "domains[0]"),
        ({"domains": ["gmail.com"]}, "domains"),
        ({"branding": {"logo": "javascript:alert(1)"}}, "branding.logo"),
        ({"user_provisioning": "sometimes"}, "user_provisioning"),
        ({"saml": {"sso_url": "ftp://idp.example/sso"}}, "saml.sso_url"),
        ({"saml": {"name_id_format": "email"}}, "saml.name_id_format"),
        ({"saml": {"colour": "blue"}}, "saml.colour"),
        ({"oidc": {"client_id": "x"}}, "oidc"),
        ({"text_record": "x" * 41}, "text_record"),
        ({"surprise": 1}, "surprise"),
        ({"attribute_mappings": {"shoe_size": "shoe"}}, "attribute_mappings.shoe_size"),
        ({"protocol": "oidc"}, "protocol"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_changes_nothing(
    keyhall: Keyhall, patch: dict[str, Any], field: str
) -> None:
    tenant = keyhall.tenant(f"Bad {field}")
    created = create(keyhall, tenant, saml_body())
    url = connections_url(tenant, f"/{created['id']}")
    response = keyhall.client.patch(url, json=patch, headers=auth(tenant.owner))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field, error
    assert error["message"].startswith(field)
    after = keyhall.client.get(url, headers=auth(tenant.owner)).json()
    assert after == created


def test_malformed_bodies(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Malformed")
    url = connections_url(tenant)
    headers = auth(tenant.owner)
    response = keyhall.client.post(url, content=b"{nope", headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "body"
    response = keyhall.client.post(url, content=b"protocol=saml", headers={**headers, "Content-Type": "text/plain"})
    assert response.status_code == 415
    big = b'{"name": "' + b"x" * (1_048_576 + 10) + b'"}'
    response = keyhall.client.post(url, content=big, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    response = keyhall.client.post(url, json=[1, 2], headers=headers)
    assert response.status_code == 400
    assert keyhall.client.get(url, headers=headers).json()["data"] == []


def test_name_and_domain_conflicts(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Conflicts")
    create(keyhall, tenant, saml_body("one", domains=["conflicts.example"]))
    dup = keyhall.client.post(connections_url(tenant), json=saml_body("one"), headers=auth(tenant.owner))
    assert dup.status_code == 409
    assert dup.json()["error"]["details"]["field"] == "name"
    dom = keyhall.client.post(connections_url(tenant), json=saml_body("two", domains=["conflicts.example"]),
                              headers=auth(tenant.owner))
    assert dom.status_code == 409
    assert "conflicts.example" in dom.json()["error"]["message"]
    # The domain a connection routes is claimed by its organization, pending DNS proof.
    domains = keyhall.client.get(f"/v1/organizations/{tenant.slug}/domains", headers=auth(tenant.owner)).json()
    assert [(d["domain"], d["status"]) for d in domains["data"]] == [("conflicts.example", "pending")]


def test_pagination_walks_every_connection_once(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Pages")
    ids = {create(keyhall, tenant, saml_body(f"c{i}"))["id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = keyhall.client.get(connections_url(tenant), params=params, headers=auth(tenant.owner)).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 5
    bad = keyhall.client.get(connections_url(tenant), params={"cursor": "!!"}, headers=auth(tenant.owner))
    assert bad.status_code == 400


def test_delete_and_audit_trail(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Audit Trail")
    created = create(keyhall, tenant, saml_body())
    url = connections_url(tenant, f"/{created['id']}")
    headers = {**auth(tenant.owner), "X-Request-ID": "req-42"}
    keyhall.client.patch(url, json={"display_name": "Renamed"}, headers=headers)
    assert keyhall.client.delete(url, headers=auth(tenant.owner)).status_code == 204
    assert keyhall.client.get(url, headers=auth(tenant.owner)).status_code == 404
    events = keyhall.client.get(f"/v1/organizations/{tenant.slug}/audit-events", params={"target_id": created["id"]},
                                headers=auth(tenant.owner)).json()["data"]
    assert [e["action"] for e in events] == ["connection.created", "connection.updated", "connection.deleted"]
    update = events[1]
    assert update["request_id"] == "req-42"
    assert update["actor"].startswith("key:")
    assert update["changes"] == {"display_name": {"from": None, "to": "Renamed"}}
