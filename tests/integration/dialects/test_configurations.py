"""Contract tests for the `configurations` dialect, built from the CreateSSOConfig page (seed 003)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyhall.core.presets import OIDC_STANDARD_CLAIMS
from keyhall.core.vocabulary import SECRET_MASK
from tests.support.api import Keyhall, Tenant, auth
from tests.support.oidc_idp import OidcIdp
from tests.support.slapd import Slapd

FIXTURES = Path(__file__).parents[2] / "fixtures" / "saml"
CONFIGURATIONS = "/api/v1/sso/configurations"

# The page's request example, verbatim (the body of its curl command).
PAGE_EXAMPLE = (
    '{"tenantUuid":"deprecated-tenant-uuid","displayName":"Corporate SSO","providerType":"OIDC","protocol":"oidc",'
    '"oidcConfig":{"clientId":"my-client-id","clientSecret":"s3cr3t","wellKnownUrl":"https://idp.example.com/.well-'
    'known/openid-configuration","redirectUri":"https://zcf.example.com/sso/callback","scope":"openid profile email",'
    '"configName":"Corporate OIDC"},"samlConfig":{"idpEntityId":"https://idp.example.com/saml/metadata","idpSsoUrl":'
    '"https://idp.example.com/saml/sso","idpSloUrl":"https://idp.example.com/saml/slo","idpCertificate":"-----BEGIN '
    'CERTIFICATE-----\\n...","idpMetadataUrl":"https://idp.example.com/saml/metadata.xml","spEntityId":"https://zcf.'
    'example.com/saml/sp","nameIdFormat":"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress","signRequests":'
    'true,"forceAuthn":false,"spCertificatePem":"-----BEGIN CERTIFICATE-----\\n..."},"ldapConfig":{"serverAddress":'
    '"ldap.example.com","port":389,"baseDn":"dc=example,dc=com","bindDn":"cn=admin,dc=example,dc=com","bindPassword"'
    ':"bindP@ssw0rd","userSearchBase":"ou=users,dc=example,dc=com","userSearchFilter":"(uid=%s)","useSsl":true},'
    '"userProvisioning":"auto","groupProvisioning":"sync","attributeMappings":"(nested object)","groupMappings":'
    '"(nested array)"}'
)
PAGE_RESPONSE_KEYS = {"uuid", "issuer", "displayName", "providerType", "protocol", "oidcConfig", "samlConfig"}
RESPONSE_KEYS = PAGE_RESPONSE_KEYS | {"ldapConfig", "userProvisioning", "groupProvisioning", "attributeMappings",
                                      "groupMappings", "createdAt", "updatedAt"}
OIDC_KEYS = {"clientId", "clientSecretSet", "wellKnownUrl", "redirectUri", "scope", "configName"}
SAML_KEYS = {"idpEntityId", "idpSsoUrl", "idpSloUrl", "idpCertificate", "idpMetadataUrl", "spEntityId", "nameIdFormat",
             "signRequests", "forceAuthn", "spCertificatePem"}
LDAP_KEYS = {"serverAddress", "port", "baseDn", "bindDn", "bindPasswordSet", "userSearchBase", "userSearchFilter",
             "useSsl"}


def page_example(idp: OidcIdp) -> dict[str, Any]:
    """The example as written; the OIDC URL at the local peer, placeholders served with their documented types."""
    body: dict[str, Any] = json.loads(PAGE_EXAMPLE)
    body["oidcConfig"]["wellKnownUrl"] = idp.discovery_url
    body["attributeMappings"] = {"email": "email", "givenName": "given_name"}
    body["groupMappings"] = [{"idpGroup": "engineering", "group": "eng"}]
    return body


def ldap_body(name: str = "Directory") -> dict[str, Any]:
    body: dict[str, Any] = json.loads(PAGE_EXAMPLE)
    body.update(displayName=name, providerType="LDAP", protocol="ldap")
    del body["oidcConfig"], body["samlConfig"], body["attributeMappings"], body["groupMappings"]
    return body


def directory_body(directory: Slapd, name: str = "Directory", **config: Any) -> dict[str, Any]:
    """The page's LDAP block with every field set, its values pointing at the test directory."""
    body = ldap_body(name)
    assert set(body["ldapConfig"]) == LDAP_KEYS - {"bindPasswordSet"} | {"bindPassword"}
    body["ldapConfig"] = {
        "serverAddress": directory.host, "port": directory.port, "baseDn": directory.base_dn,
        "bindDn": directory.service_dn, "bindPassword": directory.service_password,
        "userSearchBase": directory.people_dn, "userSearchFilter": "(uid=%s)", "useSsl": False, **config,
    }
    return body


def saml_body(name: str = "Corp SAML") -> dict[str, Any]:
    return {"tenantUuid": "ignored", "displayName": name, "providerType": "SAML", "protocol": "saml",
            "samlConfig": {"idpEntityId": "https://idp.configurations.example/saml",
                           "idpSsoUrl": "https://idp.configurations.example/sso",
                           "idpCertificate": (FIXTURES / "cert-valid.pem").read_text()}}


def create(keyhall: Keyhall, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = keyhall.client.post(CONFIGURATIONS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert_configuration(data)
    return data


def assert_configuration(data: dict[str, Any]) -> None:
    """Every response field by name and type."""
    assert set(data) == RESPONSE_KEYS
    assert str(uuid.UUID(data["uuid"])) == data["uuid"]
    for key in ("issuer", "displayName"):
        assert isinstance(data[key], str)
        assert data[key]
    assert data["providerType"] in {"OIDC", "SAML", "LDAP"}
    assert data["protocol"] == data["providerType"].lower()
    blocks = {"oidc": ("oidcConfig", OIDC_KEYS), "saml": ("samlConfig", SAML_KEYS), "ldap": ("ldapConfig", LDAP_KEYS)}
    for protocol, (name, keys) in blocks.items():
        assert isinstance(data[name], dict)
        assert set(data[name]) == (keys if protocol == data["protocol"] else set())
    assert data["userProvisioning"] in {"auto", "manual", "disabled"}
    assert data["groupProvisioning"] in {"sync", "none"}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in data["attributeMappings"].items())
    assert all(set(m) == {"idpGroup", "group"} for m in data["groupMappings"])
    now = datetime.now(UTC)
    for key in ("createdAt", "updatedAt"):
        stamp = datetime.fromisoformat(data[key].replace("Z", "+00:00"))
        assert abs(stamp - now) < timedelta(minutes=10)


def test_page_example_is_accepted(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Configurations Example")
    response = keyhall.client.post(CONFIGURATIONS, json=page_example(oidc_idp), headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    data = response.json()
    assert_configuration(data)
    assert data["issuer"] == oidc_idp.issuer
    assert (data["displayName"], data["providerType"], data["protocol"]) == ("Corporate SSO", "OIDC", "oidc")
    assert data["oidcConfig"] == {
        "clientId": "my-client-id", "clientSecretSet": True, "wellKnownUrl": oidc_idp.discovery_url,
        "redirectUri": "https://zcf.example.com/sso/callback", "scope": "openid profile email",
        "configName": "Corporate OIDC",
    }
    assert data["samlConfig"] == data["ldapConfig"] == {}
    assert response.headers["Keyhall-Ignored-Fields"] == "samlConfig, ldapConfig"
    assert (data["userProvisioning"], data["groupProvisioning"]) == ("auto", "sync")
    assert data["attributeMappings"]["email"] == "email"
    assert data["attributeMappings"]["givenName"] == "given_name"
    assert data["groupMappings"] == [{"idpGroup": "engineering", "group": "eng"}]
    assert "s3cr3t" not in response.text
    assert "bindP@ssw0rd" not in response.text
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, data["uuid"])
        assert stored is not None
        assert stored.secrets == {"client_secret": "s3cr3t"}
        assert stored.settings.get("sp_entity_id") is None  # the ignored SAML block left no trace

    read = keyhall.client.get(f"{CONFIGURATIONS}/{data['uuid']}", headers=auth(tenant.viewer))
    assert read.status_code == 200
    assert read.json() == data


def test_ldap_configuration_is_created_and_read(keyhall: Keyhall, slapd: Slapd) -> None:
    tenant = keyhall.tenant("Configurations Ldap")
    # useSsl true is LDAPS: at the directory's LDAPS port, whose test CA this API cannot name, the
    # certificate check fails, so the configuration is refused and nothing is stored.
    tls = keyhall.client.post(CONFIGURATIONS, json=directory_body(slapd, port=slapd.ldaps_port, useSsl=True),
                              headers=auth(tenant.owner))
    assert tls.status_code == 422, tls.text
    assert tls.json()["error"]["code"] == "ldap_check_failed"
    assert f"could not connect to ldaps://{slapd.host}:{slapd.ldaps_port}" in tls.json()["error"]["message"]
    assert "TLS certificate verification failed" in tls.json()["error"]["message"]
    assert keyhall.client.get(CONFIGURATIONS, headers=auth(tenant.owner)).json() == []

    created = create(keyhall, tenant, directory_body(slapd))
    assert created["issuer"] == slapd.host
    assert (created["displayName"], created["providerType"], created["protocol"]) == ("Directory", "LDAP", "ldap")
    assert created["ldapConfig"] == {
        "serverAddress": slapd.host, "port": slapd.port, "baseDn": slapd.base_dn, "bindDn": slapd.service_dn,
        "bindPasswordSet": True, "userSearchBase": slapd.people_dn, "userSearchFilter": "(uid=%s)", "useSsl": False,
    }
    assert created["oidcConfig"] == created["samlConfig"] == {}
    assert (created["userProvisioning"], created["groupProvisioning"]) == ("auto", "sync")
    assert created["attributeMappings"] == {"subject": "entryUUID", "email": "mail", "name": "cn",
                                            "givenName": "givenName", "familyName": "sn", "username": "uid"}
    assert created["groupMappings"] == []
    assert slapd.service_password not in json.dumps(created)
    read = keyhall.client.get(f"{CONFIGURATIONS}/{created['uuid']}", headers=auth(tenant.owner))
    assert read.json() == created
    assert slapd.service_password not in read.text
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, created["uuid"])
        assert stored is not None
        assert stored.secrets == {"bind_password": slapd.service_password}
        assert stored.settings["security"] == "none"
        # Saving bound as the service account at the real directory.
        assert stored.discovered is not None
        assert stored.discovered["contacted"] is True
        assert stored.discovered["bind"] == "service_account"
        assert stored.discovered["server"] == f"ldap://{slapd.host}:{slapd.port}"
    # LDAP is not a Logto connector.
    assert keyhall.client.get(f"/api/sso-connectors/{created['uuid']}", headers=auth(tenant.owner)).status_code == 404


def test_saml_configuration(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Configurations Saml")
    created = create(keyhall, tenant, saml_body())
    assert created["issuer"] == "https://idp.configurations.example/saml"
    saml = created["samlConfig"]
    assert saml["idpSsoUrl"] == "https://idp.configurations.example/sso"
    assert saml["idpCertificate"] == (FIXTURES / "cert-valid.pem").read_text().strip()
    assert saml["spEntityId"] == f"http://keyhall.test/sso/{created['uuid']}/saml/metadata"
    assert (saml["signRequests"], saml["forceAuthn"]) == (False, False)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"protocol": "saml"}, "protocol"),
        ({"providerType": "KERBEROS"}, "providerType"),
        ({"tenantUuid": None}, "tenantUuid"),
        ({"displayName": None}, "displayName"),
        ({"displayName": "x" * 65}, "displayName"),
        ({"oidcConfig": None}, "oidcConfig"),
        ({"oidcConfig": {"clientId": "x", "colour": "blue"}}, "oidcConfig.colour"),
        ({"oidcConfig": {"clientId": "x", "wellKnownUrl": "ftp://idp"}}, "oidcConfig.wellKnownUrl"),
        ({"oidcConfig": {"clientId": "x", "scope": "email"}}, "oidcConfig.scope"),
        ({"samlConfig": {"signRequests": "yes"}}, "samlConfig.signRequests"),
        ({"samlConfig": {"nameIdFormat": "email"}}, "samlConfig.nameIdFormat"),
        ({"ldapConfig": {"port": 70000}}, "ldapConfig.port"),
        ({"userProvisioning": "sometimes"}, "userProvisioning"),
        ({"attributeMappings": {"shoeSize": "shoe"}}, "attributeMappings.shoeSize"),
        ({"attributeMappings": "(nested object)"}, "attributeMappings"),
        ({"groupMappings": [{"idpGroup": "a"}]}, "groupMappings[0].group"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    keyhall: Keyhall, oidc_idp: OidcIdp, change: dict[str, Any], field: str
) -> None:
    tenant = keyhall.tenant("Configurations Bad")
    body = {k: v for k, v in {**page_example(oidc_idp), **change}.items() if v is not None}
    response = keyhall.client.post(CONFIGURATIONS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"]["field"] == field, error
    assert error["message"].startswith(field)
    assert keyhall.client.get(CONFIGURATIONS, headers=auth(tenant.owner)).json() == []


def test_the_matching_block_is_required(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Configurations Blocks")
    body = ldap_body()
    del body["ldapConfig"]
    response = keyhall.client.post(CONFIGURATIONS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "ldapConfig"
    # A SAML configuration needs no oidcConfig.
    assert "oidcConfig" not in saml_body()
    create(keyhall, tenant, saml_body())


def test_auth_roles_tenancy_and_conflicts(keyhall: Keyhall) -> None:
    mine, theirs = keyhall.tenant("Configurations Mine"), keyhall.tenant("Configurations Theirs")
    theirs_cfg = create(keyhall, theirs, saml_body())
    assert keyhall.client.get(CONFIGURATIONS).status_code == 401
    assert keyhall.client.post(CONFIGURATIONS, json=saml_body(), headers=auth("kh_x.y")).status_code == 401
    assert keyhall.client.post(CONFIGURATIONS, json=saml_body(), headers=auth(mine.viewer)).status_code == 403
    instance = keyhall.client.post(CONFIGURATIONS, json=saml_body(), headers=auth(keyhall.instance_token))
    assert instance.status_code == 400
    assert "organization" in instance.json()["error"]["message"]
    mine_cfg = create(keyhall, mine, saml_body())
    url = f"{CONFIGURATIONS}/{mine_cfg['uuid']}"
    assert keyhall.client.patch(url, json={"displayName": "x"}, headers=auth(mine.viewer)).status_code == 403
    assert keyhall.client.put(url, json=saml_body("x"), headers=auth(mine.viewer)).status_code == 403
    assert keyhall.client.delete(url, headers=auth(mine.viewer)).status_code == 403
    for method in ("get", "put", "patch", "delete"):
        for target in (theirs_cfg["uuid"], str(uuid.uuid4()), "not-a-uuid"):
            kwargs: dict[str, Any] = {"headers": auth(mine.owner)}
            if method in ("put", "patch"):
                kwargs["json"] = saml_body("hijack")
            response = keyhall.client.request(method, f"{CONFIGURATIONS}/{target}", **kwargs)
            assert response.status_code == 404, (method, target, response.text)
    assert keyhall.client.get(f"{CONFIGURATIONS}/{theirs_cfg['uuid']}", headers=auth(theirs.owner)).json() == theirs_cfg
    dup = keyhall.client.post(CONFIGURATIONS, json=saml_body(), headers=auth(mine.owner))
    assert dup.status_code == 409
    assert dup.json()["error"]["details"]["field"] == "displayName"


def test_unreachable_well_known_url_is_422_and_nothing_is_stored(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Configurations 422")
    body = page_example(oidc_idp)
    body["oidcConfig"]["wellKnownUrl"] = "http://127.0.0.1:9/.well-known/openid-configuration"
    response = keyhall.client.post(CONFIGURATIONS, json=body, headers=auth(tenant.owner))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"]["field"] == "oidcConfig.wellKnownUrl"
    assert error["message"].startswith("oidcConfig.wellKnownUrl: could not connect")
    assert keyhall.client.get(CONFIGURATIONS, headers=auth(tenant.owner)).json() == []


def test_patch_is_partial_and_keeps_secrets_sent_as_the_mask(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Configurations Patch")
    created = create(keyhall, tenant, page_example(oidc_idp))
    url = f"{CONFIGURATIONS}/{created['uuid']}"
    response = keyhall.client.patch(
        url, json={"oidcConfig": {"clientSecret": SECRET_MASK, "scope": "openid email", "configName": None}},
        headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["oidcConfig"]["scope"] == "openid email"
    assert data["oidcConfig"]["configName"] is None
    assert data["oidcConfig"]["clientSecretSet"] is True
    assert data["displayName"] == "Corporate SSO"
    assert data["groupMappings"] == created["groupMappings"]
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, created["uuid"])
        assert stored is not None
        assert stored.secrets == {"client_secret": "s3cr3t"}
    renamed = keyhall.client.patch(url, json={"displayName": "Renamed"}, headers=auth(tenant.owner)).json()
    assert renamed["displayName"] == "Renamed"
    assert {k: v for k, v in renamed.items() if k not in ("displayName", "updatedAt")} == {
        k: v for k, v in data.items() if k not in ("displayName", "updatedAt")}
    mismatch = keyhall.client.patch(url, json={"providerType": "SAML"}, headers=auth(tenant.owner))
    assert mismatch.status_code == 400


def test_put_replaces_the_whole_configuration(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Configurations Put")
    created = create(keyhall, tenant, page_example(oidc_idp))
    url = f"{CONFIGURATIONS}/{created['uuid']}"
    body = page_example(oidc_idp)
    body["oidcConfig"] = {"clientId": "other-client", "clientSecret": SECRET_MASK,
                          "wellKnownUrl": oidc_idp.discovery_url}
    del body["attributeMappings"], body["groupMappings"], body["groupProvisioning"], body["samlConfig"]
    response = keyhall.client.put(url, json=body, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    data = response.json()
    assert_configuration(data)
    assert data["oidcConfig"]["clientId"] == "other-client"
    assert data["oidcConfig"]["configName"] is None
    assert data["oidcConfig"]["scope"] == "openid profile email"
    assert data["oidcConfig"]["redirectUri"] == f"http://keyhall.test/sso/{created['uuid']}/oidc/callback"
    assert data["groupProvisioning"] == "none"
    assert data["groupMappings"] == []
    expected = {"".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))): v
                for k, v in OIDC_STANDARD_CLAIMS.items()}
    assert data["attributeMappings"] == expected
    assert data["createdAt"] == created["createdAt"]
    assert response.headers["Keyhall-Ignored-Fields"] == "ldapConfig"
    with keyhall.runtime.database.unit_of_work() as uow:
        stored = uow.connections.get(tenant.id, created["uuid"])
        assert stored is not None
        assert stored.secrets == {"client_secret": "s3cr3t"}
    change_protocol = keyhall.client.put(url, json=saml_body("Corporate SSO"), headers=auth(tenant.owner))
    assert change_protocol.status_code == 400
    assert change_protocol.json()["error"]["details"]["field"] == "protocol"
    missing = {k: v for k, v in body.items() if k != "tenantUuid"}
    assert keyhall.client.put(url, json=missing, headers=auth(tenant.owner)).status_code == 400


def test_list_pages_and_delete(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Configurations List")
    ids = [create(keyhall, tenant, saml_body(f"Saml {i}"))["uuid"] for i in range(3)]
    seen: list[str] = []
    url: str | None = f"{CONFIGURATIONS}?limit=2"
    while url:
        response = keyhall.client.get(url, headers=auth(tenant.owner))
        assert response.status_code == 200
        seen += [c["uuid"] for c in response.json()]
        link = response.headers.get("Link")
        url = link.split(">", 1)[0].lstrip("<") if link else None
    assert seen == ids
    assert keyhall.client.get(CONFIGURATIONS, params={"limit": 0}, headers=auth(tenant.owner)).status_code == 400
    response = keyhall.client.delete(f"{CONFIGURATIONS}/{ids[0]}", headers=auth(tenant.owner))
    assert response.status_code == 204
    assert keyhall.client.get(f"{CONFIGURATIONS}/{ids[0]}", headers=auth(tenant.owner)).status_code == 404
    assert [c["uuid"] for c in keyhall.client.get(CONFIGURATIONS, headers=auth(tenant.owner)).json()] == ids[1:]


def test_configuration_reads_through_native_and_logto(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Configurations Cross")
    created = create(keyhall, tenant, page_example(oidc_idp))
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections/{created['uuid']}",
                                headers=auth(tenant.owner))
    assert native.status_code == 200
    conn = native.json()
    assert (conn["protocol"], conn["name"], conn["display_name"]) == ("oidc", "Corporate SSO", "Corporate SSO")
    assert conn["oidc"]["discovery_url"] == oidc_idp.discovery_url
    assert conn["oidc"]["client_secret_set"] is True
    assert conn["group_provisioning"] == "sync"
    assert conn["group_mappings"] == [{"idp_group": "engineering", "group": "eng"}]
    assert conn["redirect_uri"] == "https://zcf.example.com/sso/callback"

    logto = keyhall.client.get(f"/api/sso-connectors/{created['uuid']}", headers=auth(tenant.owner))
    assert logto.status_code == 200
    connector = logto.json()
    assert (connector["providerName"], connector["connectorName"]) == ("OIDC", "Corporate SSO")
    assert connector["tenantId"] == tenant.org["short_id"]
    assert connector["config"]["clientId"] == "my-client-id"
    assert connector["config"]["clientSecret"] == SECRET_MASK
    assert connector["config"]["issuer"] == oidc_idp.issuer
    assert connector["providerConfig"]["issuer"] == oidc_idp.issuer
    assert "s3cr3t" not in logto.text

    saml = create(keyhall, tenant, saml_body())
    connector = keyhall.client.get(f"/api/sso-connectors/{saml['uuid']}", headers=auth(tenant.owner)).json()
    assert connector["config"]["entityId"] == "https://idp.configurations.example/saml"
    assert connector["config"]["x509Certificate"] == (FIXTURES / "cert-valid.pem").read_text().strip()
    assert connector["providerConfig"]["source"] == "manual"
