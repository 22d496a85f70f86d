"""Contract tests for the `logto` dialect, built from the Logto page (seed 001), on a real database and IdPs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from keyhall.core.vocabulary import SECRET_MASK
from tests.support.api import Keyhall, Tenant, auth
from tests.support.oidc_idp import OidcIdp
from tests.support.slapd import Slapd

FIXTURES = Path(__file__).parents[2] / "fixtures" / "saml"
SECRET = "logto-client-secret-value-0815"
CONNECTORS = "/api/sso-connectors"

# The page's PATCH request example, verbatim.
PAGE_EXAMPLE = (
    '{"config":{},"domains":["string"],"branding":{"displayName":"string","logo":"string","darkLogo":"string"},'
    '"syncProfile":true,"connectorName":"string"}'
)
RESPONSE_KEYS = {
    "tenantId", "id", "providerName", "connectorName", "config", "domains", "branding", "syncProfile", "createdAt",
    "name", "providerType", "providerLogo", "providerLogoDark", "providerConfig",
}
PROVIDER_NAMES = {"OIDC", "SAML", "AzureAD", "GoogleWorkspace", "Okta", "AzureAdOidc"}


def oidc_body(idp: OidcIdp, name: str = "corp-oidc", **extra: Any) -> dict[str, Any]:
    return {"providerName": "OIDC", "connectorName": name,
            "config": {"clientId": "keyhall-client", "clientSecret": SECRET, "issuer": idp.issuer,
                       "scope": "openid profile email"}, **extra}


def saml_body(name: str = "corp-saml", fixture: str = "metadata-valid.xml", **extra: Any) -> dict[str, Any]:
    return {"providerName": "SAML", "connectorName": name,
            "config": {"metadata": (FIXTURES / fixture).read_text()}, **extra}


def create(keyhall: Keyhall, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = keyhall.client.post(CONNECTORS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert_connector(keyhall, tenant, data)
    return data


def assert_connector(keyhall: Keyhall, tenant: Tenant, data: dict[str, Any]) -> None:
    """Every response field of the page, by name and type."""
    assert set(data) == RESPONSE_KEYS
    assert isinstance(data["tenantId"], str)
    assert 1 <= len(data["tenantId"]) <= 21
    assert data["tenantId"] == tenant.org["short_id"]
    assert isinstance(data["id"], str)
    assert 1 <= len(data["id"]) <= 128
    assert data["providerName"] in PROVIDER_NAMES
    assert isinstance(data["connectorName"], str)
    assert 1 <= len(data["connectorName"]) <= 128
    assert isinstance(data["config"], dict)
    assert isinstance(data["domains"], list)
    assert all(isinstance(d, str) for d in data["domains"])
    assert isinstance(data["branding"], dict)
    assert set(data["branding"]) <= {"displayName", "logo", "darkLogo"}
    assert all(isinstance(v, str) for v in data["branding"].values())
    assert isinstance(data["syncProfile"], bool)
    assert isinstance(data["createdAt"], int | float)
    assert not isinstance(data["createdAt"], bool)
    assert abs(data["createdAt"] - time.time() * 1000) < 10 * 60 * 1000
    assert isinstance(data["name"], str)
    assert data["name"]
    assert data["providerType"] in {"oidc", "saml"}
    for key in ("providerLogo", "providerLogoDark"):
        assert isinstance(data[key], str)
        assert data[key].startswith("http://keyhall.test/static/providers/")
        logo = keyhall.client.get(data[key].removeprefix("http://keyhall.test"))
        assert logo.status_code == 200
        assert logo.headers["content-type"] == "image/svg+xml"
        assert logo.content.startswith(b"<svg")
    assert isinstance(data["providerConfig"], dict)


def test_page_example_is_accepted(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Logto Example")
    created = create(keyhall, tenant, oidc_body(oidc_idp))
    example = json.loads(PAGE_EXAMPLE)
    # Placeholders served with their documented type: a domain name and logo URLs.
    example["domains"] = ["logto-example.example"]
    example["branding"]["logo"] = "https://cdn.logto-example.example/logo.svg"
    example["branding"]["darkLogo"] = "https://cdn.logto-example.example/logo-dark.svg"
    response = keyhall.client.patch(f"{CONNECTORS}/{created['id']}", json=example, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    data = response.json()
    assert_connector(keyhall, tenant, data)
    assert data["connectorName"] == "string"
    assert data["domains"] == ["logto-example.example"]
    assert data["branding"] == example["branding"]
    assert data["syncProfile"] is True
    assert data["config"] == created["config"]  # an empty config changes nothing
    assert data["createdAt"] == created["createdAt"]


def test_oidc_connector_is_validated_and_read_back(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Logto Oidc")
    created = create(keyhall, tenant, oidc_body(oidc_idp, domains=["logto-oidc.example"],
                                                  branding={"displayName": "Corp"}, syncProfile=False))
    assert created["providerName"] == "OIDC"
    assert created["name"] == "OIDC"
    assert created["providerType"] == "oidc"
    assert created["config"] == {"clientId": "keyhall-client", "clientSecret": SECRET_MASK,
                                 "issuer": oidc_idp.issuer, "scope": "openid profile email"}
    assert created["branding"] == {"displayName": "Corp"}
    assert created["syncProfile"] is False
    assert created["providerConfig"]["issuer"] == oidc_idp.issuer
    assert created["providerConfig"]["tokenEndpoint"] == f"{oidc_idp.base_url}/token"
    assert created["providerConfig"]["jwks"]["keyCount"] >= 1
    assert created["providerConfig"]["redirectUri"] == f"http://keyhall.test/sso/{created['id']}/oidc/callback"

    response = keyhall.client.get(f"{CONNECTORS}/{created['id']}", headers=auth(tenant.viewer))
    assert response.status_code == 200
    assert response.json() == created
    assert SECRET not in response.text
    listing = keyhall.client.get(CONNECTORS, headers=auth(tenant.viewer))
    assert listing.status_code == 200
    assert listing.json() == [created]
    assert listing.headers["Total-Number"] == "1"


def test_saml_connector_from_metadata_reports_entity_and_certificate_expiry(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Logto Saml")
    created = create(keyhall, tenant, saml_body())
    assert created["providerName"] == "SAML"
    assert created["providerType"] == "saml"
    assert created["config"]["metadata"] == (FIXTURES / "metadata-valid.xml").read_text().strip()
    assert created["config"]["attributeMapping"]["email"] == "email"
    found = created["providerConfig"]
    assert found["idpEntityId"] == "https://idp.keyhall.test/saml/metadata"
    assert isinstance(found["certificateExpiresAt"], str)
    assert found["certificateDaysLeft"] > 365
    assert found["serviceProvider"] == {
        "entityId": f"http://keyhall.test/sso/{created['id']}/saml/metadata",
        "assertionConsumerServiceUrl": f"http://keyhall.test/sso/{created['id']}/saml/acs",
        "metadataUrl": f"http://keyhall.test/sso/{created['id']}/saml/metadata",
    }

    body = saml_body("mapped")
    body["config"]["attributeMapping"] = {"id": "uid", "email": "mail", "givenName": "gn"}
    mapped = create(keyhall, tenant, body)
    mapping = mapped["config"]["attributeMapping"]
    assert (mapping["id"], mapping["email"], mapping["givenName"]) == ("uid", "mail", "gn")


def test_provider_presets_and_names(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Logto Presets")
    azure = create(keyhall, tenant, {**saml_body("entra", "metadata-azure-ad.xml"), "providerName": "AzureAD"})
    assert (azure["providerName"], azure["name"], azure["providerType"]) == ("AzureAD", "Microsoft Entra ID", "saml")
    okta = create(keyhall, tenant, {**oidc_body(oidc_idp, "okta"), "providerName": "Okta"})
    assert (okta["providerName"], okta["name"], okta["providerType"]) == ("Okta", "Okta", "oidc")
    entra_oidc = create(keyhall, tenant, {**oidc_body(oidc_idp, "entra-oidc"), "providerName": "AzureAdOidc"})
    assert entra_oidc["providerName"] == "AzureAdOidc"
    # A pair Logto has no name for (Google Workspace over SAML) shows as the generic SAML connector.
    native = keyhall.client.post(
        f"/v1/organizations/{tenant.slug}/connections", headers=auth(tenant.owner),
        json={"protocol": "saml", "provider": "google_workspace", "name": "gw-saml",
              "saml": {"metadata_xml": (FIXTURES / "metadata-google-workspace.xml").read_text()}},
    )
    assert native.status_code == 201, native.text
    shown = keyhall.client.get(f"{CONNECTORS}/{native.json()['id']}", headers=auth(tenant.owner)).json()
    assert_connector(keyhall, tenant, shown)
    assert (shown["providerName"], shown["name"]) == ("SAML", "SAML")


def test_connector_providers(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Logto Providers")
    response = keyhall.client.get("/api/sso-connector-providers", headers=auth(tenant.viewer))
    assert response.status_code == 200
    providers = response.json()
    assert {p["providerName"] for p in providers} == PROVIDER_NAMES
    for provider in providers:
        assert set(provider) == {"providerName", "providerType", "name", "logo", "logoDark", "description"}
        assert provider["providerType"] in {"oidc", "saml"}
        for key in ("logo", "logoDark"):
            logo = keyhall.client.get(provider[key].removeprefix("http://keyhall.test"))
            assert logo.status_code == 200
            assert logo.headers["content-type"] == "image/svg+xml"
    assert keyhall.client.get("/api/sso-connector-providers").status_code == 401
    assert keyhall.client.get("/static/providers/nope.svg").status_code == 404


def test_pages_and_total_number_leave_ldap_out(keyhall: Keyhall, slapd: Slapd) -> None:
    tenant = keyhall.tenant("Logto Pages")
    ids = [create(keyhall, tenant, saml_body(f"c{i}"))["id"] for i in range(3)]
    ldap = keyhall.client.post(
        f"/v1/organizations/{tenant.slug}/connections", headers=auth(tenant.owner),
        json={"protocol": "ldap", "name": "directory", "ldap": {**slapd.ldap_settings(), **slapd.bind_secrets()}},
    )
    assert ldap.status_code == 201, ldap.text
    assert ldap.json()["discovered"]["contacted"] is True
    first = keyhall.client.get(CONNECTORS, params={"page": 1, "page_size": 2}, headers=auth(tenant.owner))
    second = keyhall.client.get(CONNECTORS, params={"page": 2, "page_size": 2}, headers=auth(tenant.owner))
    assert first.headers["Total-Number"] == second.headers["Total-Number"] == "3"
    assert [c["id"] for c in first.json() + second.json()] == ids
    assert keyhall.client.get(f"{CONNECTORS}/{ldap.json()['id']}", headers=auth(tenant.owner)).status_code == 404
    for params in ({"page": 0}, {"page_size": 101}, {"page": "x"}):
        bad = keyhall.client.get(CONNECTORS, params=params, headers=auth(tenant.owner))
        assert bad.status_code == 400, params
        assert next(iter(params)) in bad.json()["error"]["details"]["field"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"providerName": "Auth0", "connectorName": "x", "config": {}}, "providerName"),
        ({"connectorName": "x", "config": {}}, "providerName"),
        ({"providerName": "SAML", "connectorName": "", "config": {}}, "connectorName"),
        ({"providerName": "SAML", "connectorName": "x" * 129, "config": {}}, "connectorName"),
        ({"providerName": "SAML", "connectorName": "x", "config": {}, "enableTokenStorage": True},
         "enableTokenStorage"),
        ({"providerName": "SAML", "connectorName": "x", "config": {"clientId": "a"}}, "config.clientId"),
        ({"providerName": "OIDC", "connectorName": "x", "config": {"clientId": 5}}, "config.clientId"),
        ({"providerName": "OIDC", "connectorName": "x", "config": {"issuer": "http://127.0.0.1:9"}}, "config.clientId"),
        ({"providerName": "OIDC", "connectorName": "x", "config": {"clientId": "a", "scope": "email"}}, "config.scope"),
        ({"providerName": "SAML", "connectorName": "x", "config": {"x509Certificate": ["a"]}},
         "config.x509Certificate"),
        ({"providerName": "SAML", "connectorName": "x", "config": {"attributeMapping": {"shoe": "s"}}},
         "config.attributeMapping.shoe"),
        ({"providerName": "SAML", "connectorName": "x", "config": {}, "domains": ["not a domain"]}, "domains[0]"),
        ({"providerName": "SAML", "connectorName": "x", "config": {}, "syncProfile": "yes"}, "syncProfile"),
        ({"providerName": "SAML", "connectorName": "x", "config": {}, "branding": {"logo": "javascript:x"}},
         "branding.logo"),
        ({"providerName": "SAML", "connectorName": "x", "config": {}, "branding": {"displayName": "x" * 65}},
         "branding.displayName"),
        ({"providerName": "SAML", "connectorName": "x", "config": {}, "branding": {"colour": "red"}},
         "branding.colour"),
    ],
)
def test_schema_errors_are_400_naming_the_field(keyhall: Keyhall, body: dict[str, Any], field: str) -> None:
    tenant = keyhall.tenant("Logto Bad")
    response = keyhall.client.post(CONNECTORS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"]["field"] == field, error
    assert error["message"].startswith(field)
    assert keyhall.client.get(CONNECTORS, headers=auth(tenant.owner)).json() == []


def test_patch_is_partial_and_strict(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Logto Patch")
    created = create(keyhall, tenant, saml_body())
    url = f"{CONNECTORS}/{created['id']}"
    for body, field in (({"providerName": "OIDC"}, "providerName"), ({"id": "x"}, "id"),
                        ({"config": {"clientId": "x"}}, "config.clientId"), ({"connectorName": None}, "connectorName"),
                        ({"config": {"metadataUrl": "http://127.0.0.1:9/md"}}, "config.metadata")):
        response = keyhall.client.patch(url, json=body, headers=auth(tenant.owner))
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["details"]["field"] == field
    response = keyhall.client.patch(url, json={"syncProfile": False}, headers=auth(tenant.owner))
    assert response.status_code == 200
    after = response.json()
    assert after["syncProfile"] is False
    assert {k: v for k, v in after.items() if k != "syncProfile"} == {
        k: v for k, v in created.items() if k != "syncProfile"}


def test_auth_roles_and_tenancy(keyhall: Keyhall) -> None:
    mine, theirs = keyhall.tenant("Logto Mine"), keyhall.tenant("Logto Theirs")
    theirs_conn = create(keyhall, theirs, saml_body())
    assert keyhall.client.get(CONNECTORS).status_code == 401
    assert keyhall.client.get(CONNECTORS, headers=auth("kh_nope.nope")).status_code == 401
    assert keyhall.client.post(CONNECTORS, json=saml_body()).status_code == 401
    for token in (mine.viewer, mine.admin):
        assert keyhall.client.post(CONNECTORS, json=saml_body(), headers=auth(token)).status_code == 403
    mine_conn = create(keyhall, mine, saml_body())
    url = f"{CONNECTORS}/{mine_conn['id']}"
    assert keyhall.client.patch(url, json={"syncProfile": False}, headers=auth(mine.viewer)).status_code == 403
    assert keyhall.client.delete(url, headers=auth(mine.viewer)).status_code == 403
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"headers": auth(mine.owner)}
        if method == "patch":
            kwargs["json"] = {"connectorName": "hijack"}
        for connector_id in (theirs_conn["id"], "no-such-connector"):
            response = keyhall.client.request(method, f"{CONNECTORS}/{connector_id}", **kwargs)
            assert response.status_code == 404, (method, response.text)
    assert keyhall.client.get(f"{CONNECTORS}/{theirs_conn['id']}", headers=auth(theirs.owner)).json() == theirs_conn
    instance = keyhall.client.get(CONNECTORS, headers=auth(keyhall.instance_token))
    assert instance.status_code == 400
    assert "organization" in instance.json()["error"]["message"]


def test_conflicts_on_name_and_domain(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Logto Conflicts")
    first = create(keyhall, tenant, saml_body("one", domains=["logto-conflict.example"]))
    dup = keyhall.client.post(CONNECTORS, json=saml_body("one"), headers=auth(tenant.owner))
    assert dup.status_code == 409
    assert dup.json()["error"]["details"]["field"] == "connectorName"
    assert dup.json()["error"]["message"].startswith("connectorName")
    dom = keyhall.client.post(CONNECTORS, json=saml_body("two", domains=["logto-conflict.example"]),
                              headers=auth(tenant.owner))
    assert dom.status_code == 409
    assert dom.json()["error"]["details"]["field"] == "domains"
    assert "logto-conflict.example" in dom.json()["error"]["message"]
    second = create(keyhall, tenant, saml_body("two"))
    renamed = keyhall.client.patch(f"{CONNECTORS}/{second['id']}", json={"connectorName": "one"},
                                   headers=auth(tenant.owner))
    assert renamed.status_code == 409
    listing = keyhall.client.get(CONNECTORS, headers=auth(tenant.owner)).json()
    assert [c["connectorName"] for c in listing] == ["one", "two"]
    assert listing[0] == first


def test_unverifiable_idp_is_422_with_the_reason_and_nothing_is_stored(
    keyhall: Keyhall, oidc_idp_wrong_issuer: OidcIdp
) -> None:
    tenant = keyhall.tenant("Logto 422")
    body = oidc_body(oidc_idp_wrong_issuer)
    body["config"]["issuer"] = "http://127.0.0.1:9"
    response = keyhall.client.post(CONNECTORS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"]["field"] == "config.issuer"
    assert "could not connect" in error["message"]
    body["config"]["issuer"] = oidc_idp_wrong_issuer.base_url  # reached at 127.0.0.1, calls itself localhost
    response = keyhall.client.post(CONNECTORS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 422
    assert "localhost" in response.json()["error"]["message"]
    bad_xml = saml_body("bad", "metadata-malformed.xml")
    response = keyhall.client.post(CONNECTORS, json=bad_xml, headers=auth(tenant.owner))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "config.metadata"
    assert keyhall.client.get(CONNECTORS, headers=auth(tenant.owner)).json() == []


def test_secret_mask_round_trip_keeps_the_secret(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Logto Mask")
    created = create(keyhall, tenant, oidc_body(oidc_idp))
    url = f"{CONNECTORS}/{created['id']}"
    echoed = {**created["config"], "scope": "openid email"}
    assert echoed["clientSecret"] == SECRET_MASK
    response = keyhall.client.patch(url, json={"config": echoed}, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    assert response.json()["config"]["scope"] == "openid email"
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, created["id"])
        assert stored is not None
        assert stored.secrets == {"client_secret": SECRET}
    response = keyhall.client.patch(url, json={"config": {"clientSecret": "rotated"}}, headers=auth(tenant.owner))
    assert response.status_code == 200
    assert "rotated" not in response.text
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, created["id"])
        assert stored is not None
        assert stored.secrets == {"client_secret": "rotated"}


def test_delete(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Logto Delete")
    created = create(keyhall, tenant, saml_body())
    url = f"{CONNECTORS}/{created['id']}"
    response = keyhall.client.delete(url, headers=auth(tenant.owner))
    assert response.status_code == 204
    assert response.content == b""
    assert keyhall.client.get(url, headers=auth(tenant.owner)).status_code == 404
    assert keyhall.client.delete(url, headers=auth(tenant.owner)).status_code == 404


def test_connector_reads_through_native_and_configurations(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Logto Cross")
    oidc = create(keyhall, tenant, oidc_body(oidc_idp, domains=["logto-cross.example"]))
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections/{oidc['id']}",
                                headers=auth(tenant.owner))
    assert native.status_code == 200
    conn = native.json()
    assert (conn["protocol"], conn["provider"], conn["name"]) == ("oidc", "generic", "corp-oidc")
    assert conn["oidc"]["client_id"] == "keyhall-client"
    assert conn["oidc"]["client_secret_set"] is True
    assert conn["domains"] == ["logto-cross.example"]
    assert conn["discovered"]["issuer"] == oidc_idp.issuer

    config = keyhall.client.get(f"/api/v1/sso/configurations/{oidc['id']}", headers=auth(tenant.owner))
    assert config.status_code == 200
    seen = config.json()
    assert (seen["uuid"], seen["providerType"], seen["protocol"]) == (oidc["id"], "OIDC", "oidc")
    assert seen["issuer"] == oidc_idp.issuer
    assert seen["displayName"] == "corp-oidc"
    assert seen["oidcConfig"]["clientId"] == "keyhall-client"
    assert seen["oidcConfig"]["clientSecretSet"] is True
    assert SECRET not in config.text

    saml = create(keyhall, tenant, saml_body())
    seen = keyhall.client.get(f"/api/v1/sso/configurations/{saml['id']}", headers=auth(tenant.owner)).json()
    assert seen["issuer"] == "https://idp.keyhall.test/saml/metadata"
    assert seen["samlConfig"]["spEntityId"] == f"http://keyhall.test/sso/{saml['id']}/saml/metadata"
    assert seen["oidcConfig"] == {}
