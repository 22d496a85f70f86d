"""Contract tests for the Raidiam dialect, built from seeds/004 (sso-configuration under an
authorisation server), against a real OpenID provider and a real database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.runtime import Runtime
from tests.support.api import Keyhall, Tenant, auth
from tests.support.oidc_idp import OidcIdp
from tests.support.settings import make_settings

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SSO_KEYS = {
    "DisplayName", "Contacts", "ID", "ServerID", "RedirectUri", "TextRecord", "Status", "CreatedAt", "UpdatedAt",
}
PAGE_EXAMPLE = {"DisplayName": "string", "Contacts": ["user@example.com"], "Status": "Active", "TextRecord": "string"}


def servers_url(tenant: Tenant) -> str:
    return f"/organisations/{tenant.id}/authorisationservers"


def make_server(keyhall: Keyhall, tenant: Tenant, idp: OidcIdp, **extra: Any) -> dict[str, Any]:
    body = {"CustomerFriendlyName": "Corp IdP", "Issuer": idp.issuer, "ClientId": "corp-client",
            "ClientSecret": "corp-secret", **extra}
    response = keyhall.client.post(servers_url(tenant), json=body, headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def sso_url(tenant: Tenant, server: dict[str, Any], suffix: str = "") -> str:
    return f"{servers_url(tenant)}/{server['AuthorisationServerId']}/sso-configuration{suffix}"


def errors_of(response: Any) -> list[str]:
    body = response.json()
    assert set(body) == {"errors"}, body
    assert all(isinstance(e, str) for e in body["errors"])
    return list(body["errors"])


def test_authorisation_server_lifecycle(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Raidiam Servers")
    server = make_server(keyhall, tenant, oidc_idp)
    assert server["Issuer"] == oidc_idp.issuer
    assert server["ClientSecretSet"] is True
    assert "ClientSecret" not in server
    assert ISO_MS.match(server["CreatedAt"])
    listed = keyhall.client.get(servers_url(tenant), headers=auth(tenant.viewer)).json()
    assert [s["AuthorisationServerId"] for s in listed] == [server["AuthorisationServerId"]]

    url = f"{servers_url(tenant)}/{server['AuthorisationServerId']}"
    replaced = keyhall.client.put(url, json={"CustomerFriendlyName": "Renamed", "Issuer": oidc_idp.issuer,
                                             "ClientId": "other-client"}, headers=auth(tenant.owner))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["ClientId"] == "other-client"
    assert replaced.json()["CustomerFriendlyName"] == "Renamed"
    # A PUT without a secret keeps the write-only secret.
    assert replaced.json()["ClientSecretSet"] is True

    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections/{server['AuthorisationServerId']}",
                                headers=auth(tenant.owner)).json()
    assert native["protocol"] == "oidc"
    assert native["oidc"]["client_id"] == "other-client"

    assert keyhall.client.delete(url, headers=auth(tenant.owner)).status_code == 204
    assert keyhall.client.get(url, headers=auth(tenant.owner)).status_code == 404


def test_sso_configuration_from_the_page_example(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Raidiam Sso")
    server = make_server(keyhall, tenant, oidc_idp)
    response = keyhall.client.post(sso_url(tenant, server), json=PAGE_EXAMPLE, headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    sso = response.json()
    assert set(sso) == SSO_KEYS
    assert uuid.UUID(sso["ID"])
    assert sso["ServerID"] == server["AuthorisationServerId"]
    assert sso["DisplayName"] == "string"
    assert sso["Contacts"] == ["user@example.com"]
    assert sso["Status"] == "Active"
    assert sso["TextRecord"] == "string"
    assert len(sso["RedirectUri"]) <= 255
    assert re.match(r"^(http://|https://).*", sso["RedirectUri"])
    assert sso["RedirectUri"].endswith(f"/sso/{server['AuthorisationServerId']}/oidc/callback")
    assert ISO_MS.match(sso["CreatedAt"])
    assert ISO_MS.match(sso["UpdatedAt"])
    assert "x-fapi-interaction-id" in response.headers

    again = keyhall.client.post(sso_url(tenant, server), json=PAGE_EXAMPLE, headers=auth(tenant.owner))
    assert again.status_code == 409
    assert errors_of(again)

    listed = keyhall.client.get(sso_url(tenant, server), headers=auth(tenant.viewer)).json()
    assert [s["ID"] for s in listed] == [sso["ID"]]
    one = keyhall.client.get(sso_url(tenant, server, f"/{sso['ID']}"), headers=auth(tenant.viewer))
    assert one.json() == sso

    put = keyhall.client.put(sso_url(tenant, server, f"/{sso['ID']}"), json={"Status": "Inactive", "TextRecord": "t2"},
                             headers=auth(tenant.owner))
    assert put.status_code == 200, put.text
    assert put.json()["Status"] == "Inactive"
    assert put.json()["DisplayName"] is None  # PUT replaces the whole configuration
    assert put.json()["Contacts"] == []
    native = keyhall.client.get(f"/v1/organizations/{tenant.slug}/connections/{server['AuthorisationServerId']}",
                                headers=auth(tenant.owner)).json()
    assert native["status"] == "inactive"
    assert native["text_record"] == "t2"

    deleted = keyhall.client.delete(sso_url(tenant, server, f"/{sso['ID']}"), headers=auth(tenant.owner))
    assert deleted.status_code == 204
    assert keyhall.client.get(sso_url(tenant, server), headers=auth(tenant.owner)).json() == []
    gone = keyhall.client.get(sso_url(tenant, server, f"/{sso['ID']}"), headers=auth(tenant.owner))
    assert gone.status_code == 404
    assert errors_of(gone)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"DisplayName": "x" * 65}, "DisplayName"),
        ({"Contacts": []}, "Contacts"),
        ({"Contacts": [f"u{i}@example.com" for i in range(11)]}, "Contacts"),
        ({"Contacts": ["not-an-email"]}, "Contacts"),
        ({"Status": "Paused"}, "Status"),
        ({"TextRecord": ""}, "TextRecord"),
        ({"TextRecord": "x" * 41}, "TextRecord"),
        ({"Unknown": 1}, "Unknown"),
    ],
)
def test_sso_configuration_limits(keyhall: Keyhall, oidc_idp: OidcIdp, body: dict[str, Any], field: str) -> None:
    tenant = keyhall.tenant("Raidiam Limits")
    server = make_server(keyhall, tenant, oidc_idp)
    response = keyhall.client.post(sso_url(tenant, server), json={**PAGE_EXAMPLE, **body}, headers=auth(tenant.owner))
    assert response.status_code == 400, response.text
    assert any(e.startswith(field) for e in errors_of(response)), response.json()
    assert keyhall.client.get(sso_url(tenant, server), headers=auth(tenant.owner)).json() == []


@pytest.mark.parametrize("org_id", ["x" * 41, "a<b", ""])
def test_path_parameters_are_checked(keyhall: Keyhall, org_id: str) -> None:
    tenant = keyhall.tenant("Raidiam Path")
    response = keyhall.client.get(f"/organisations/{org_id}/authorisationservers", headers=auth(tenant.owner))
    assert response.status_code in (400, 404)
    if org_id:
        assert response.status_code == 400
        assert any("OrganisationId" in e for e in errors_of(response))


def test_fapi_headers(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant = keyhall.tenant("Raidiam Headers")
    url = servers_url(tenant)
    interaction = str(uuid.uuid4())
    echoed = keyhall.client.get(url, headers={**auth(tenant.owner), "x-fapi-interaction-id": interaction,
                                              "x-fapi-auth-date": "Sun, 10 Sep 2017 19:43:31 UTC",
                                              "x-fapi-customer-ip-address": "203.0.113.7"})
    assert echoed.status_code == 200
    assert echoed.headers["x-fapi-interaction-id"] == interaction

    generated = keyhall.client.get(url, headers=auth(tenant.owner))
    assert uuid.UUID(generated.headers["x-fapi-interaction-id"])

    bad_date = keyhall.client.get(url, headers={**auth(tenant.owner), "x-fapi-auth-date": "2017-09-10T19:43:31Z"})
    assert bad_date.status_code == 400
    assert any("x-fapi-auth-date" in e for e in errors_of(bad_date))
    assert "x-fapi-interaction-id" in bad_date.headers
    bad_id = keyhall.client.get(url, headers={**auth(tenant.owner), "x-fapi-interaction-id": "not-a-uuid"})
    assert bad_id.status_code == 400
    bad_ip = keyhall.client.get(url, headers={**auth(tenant.owner), "x-fapi-customer-ip-address": "nope"})
    assert bad_ip.status_code == 400
    html_only = keyhall.client.get(url, headers={**auth(tenant.owner), "Accept": "text/html"})
    assert html_only.status_code == 406
    assert errors_of(html_only)


def test_auth_roles_and_tenancy(keyhall: Keyhall, oidc_idp: OidcIdp) -> None:
    tenant, other = keyhall.tenant("Raidiam Mine"), keyhall.tenant("Raidiam Other")
    server = make_server(keyhall, other, oidc_idp)
    assert keyhall.client.get(servers_url(tenant)).status_code == 401
    forbidden = keyhall.client.post(servers_url(tenant), json={"Issuer": oidc_idp.issuer, "ClientId": "c"},
                                    headers=auth(tenant.viewer))
    assert forbidden.status_code == 403
    assert errors_of(forbidden)
    not_mine = keyhall.client.get(f"{servers_url(other)}/{server['AuthorisationServerId']}", headers=auth(tenant.owner))
    assert not_mine.status_code == 404
    crossed = keyhall.client.get(f"{servers_url(tenant)}/{server['AuthorisationServerId']}", headers=auth(tenant.owner))
    assert crossed.status_code == 404


def test_unverifiable_issuer_is_422(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Raidiam 422")
    response = keyhall.client.post(servers_url(tenant), json={"Issuer": "http://127.0.0.1:9", "ClientId": "c"},
                                   headers=auth(tenant.owner))
    assert response.status_code == 422
    assert any(e.startswith("Issuer") for e in errors_of(response))


@pytest.fixture
def throttled(tmp_path: Path, database_url: str) -> Iterator[Keyhall]:
    runtime = Runtime.build(make_settings(tmp_path, database_url, api_rate_limit_per_minute=3))
    runtime.database.migrate()
    stopped = runtime.clock()
    runtime.clock = lambda: stopped  # every call falls in one window: a minute's end cannot reset it
    with TestClient(create_app(runtime.settings, runtime), raise_server_exceptions=False) as client:
        yield Keyhall(client, runtime)
    runtime.database.dispose()


def test_too_many_requests_is_429_with_retry_after(throttled: Keyhall) -> None:
    tenant = throttled.tenant("Raidiam Throttle")
    statuses = [throttled.client.get(servers_url(tenant), headers=auth(tenant.viewer)) for _ in range(5)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    limited = statuses[3]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert errors_of(limited)
    # Another key has its own budget.
    assert throttled.client.get(servers_url(tenant), headers=auth(tenant.owner)).status_code == 200
