"""Multi-tenant IdPs are pinned to the organization's own tenant: a Google Workspace connection
accepts only ID tokens whose ``hd`` is one of its domains, an Azure AD (Entra ID) connection only
those whose ``tid`` is its tenant. Without that, any Google or Microsoft account signs in as a member.

The IdP is the real npm oidc-provider standing in for Google and Microsoft: the connections use
the presets (``provider``) with the local issuer, and the accounts carry ``hd`` / ``tid`` claims.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup
from tests.support.oidc_idp import OidcIdp
from tests.support.trust import failure_reason, new_organization, oidc_sign_in, oidc_tenant

pytestmark = pytest.mark.peers

RUN = uuid.uuid4().hex[:8]
WORKSPACE = f"workspace-{RUN}.test"
TENANT = str(uuid.uuid4())
OTHER_TENANT = str(uuid.uuid4())

ACCOUNTS = (
    {"sub": "gwen", "email": f"gwen@{WORKSPACE}", "email_verified": True, "hd": WORKSPACE},
    {"sub": "gary", "email": "gary@gmail.com", "email_verified": True},  # a consumer account: no hd
    {"sub": "greta", "email": f"greta@other-{RUN}.test", "email_verified": True, "hd": f"other-{RUN}.test"},
    {"sub": "ada", "email": f"ada@{WORKSPACE}", "email_verified": True, "tid": TENANT},
    {"sub": "axel", "email": f"axel@{WORKSPACE}", "email_verified": True, "tid": OTHER_TENANT},
    {"sub": "anon", "email": f"anon@{WORKSPACE}", "email_verified": True},
)


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcIdp]:
    with OidcIdp.start(accounts=ACCOUNTS) as provider:
        yield provider


def test_google_workspace_accepts_only_its_hosted_domains(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "Workspace", domains=[WORKSPACE], provider="google_workspace")
    assert s.connection["provider"] == "google_workspace"

    assert oidc_sign_in(s, "gwen").claims()["email"] == f"gwen@{WORKSPACE}"
    for login in ("gary", "greta"):  # a consumer Google account; another company's Workspace
        attempt = oidc_sign_in(s, login)
        assert failure_reason(s, attempt.refused(403)) == "tenant_mismatch"
    with s.live.api() as api:
        users = api.get(f"/v1/organizations/{s.org['id']}/users", headers=auth(s.owner)).json()["data"]
    assert [u["email"] for u in users] == [f"gwen@{WORKSPACE}"]


def test_google_workspace_without_domains_signs_nobody_in(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "NoDomains", domains=[], provider="google_workspace")
    attempt = oidc_sign_in(s, "gwen")
    assert failure_reason(s, attempt.refused(403)) == "tenant_not_configured"


def test_azure_ad_accepts_only_its_tenant(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "Entra", domains=[f"entra-{RUN}.test"], provider="azure_ad")
    assert s.connection["provider"] == "azure_ad"
    path = f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}"

    # The issuer is not a single-tenant Microsoft issuer and no tenant is configured: nobody signs in.
    attempt = oidc_sign_in(s, "ada")
    assert failure_reason(s, attempt.refused(403)) == "tenant_not_configured"

    with s.live.api() as api:
        bad = api.patch(path, json={"oidc": {"tenant_id": "common"}}, headers=auth(s.owner))
        assert bad.status_code == 400, bad.text
        assert "oidc.tenant_id" in bad.text
        pinned = api.patch(path, json={"oidc": {"tenant_id": TENANT}}, headers=auth(s.owner))
        assert pinned.status_code == 200, pinned.text
        assert pinned.json()["oidc"]["tenant_id"] == TENANT

    assert oidc_sign_in(s, "ada").claims()["email"] == f"ada@{WORKSPACE}"
    for login in ("axel", "anon"):  # another tenant's account; a token without tid
        attempt = oidc_sign_in(s, login)
        assert failure_reason(s, attempt.refused(403)) == "tenant_mismatch"


def test_logtos_azure_ad_oidc_connector_is_pinned_to_its_tenant(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    """Logto's ``AzureAdOidc`` is the azure_ad preset: its connectors are pinned the same way. Logto's
    API has no tenant field, so a connector without a single-tenant issuer signs nobody in until the
    owner sets ``oidc.tenant_id`` (native API)."""
    org, owner = new_organization(live_keyhall, "LogtoEntra")
    with live_keyhall.api() as api:
        made = api.post("/api/sso-connectors", headers=auth(owner), json={
            "providerName": "AzureAdOidc", "connectorName": "entra", "domains": [f"logto-{RUN}.test"],
            "config": {"clientId": "pending", "issuer": idp.issuer, "scope": "openid profile email"}})
        assert made.status_code == 200, made.text
        path = f"/v1/organizations/{org['id']}/connections/{made.json()['id']}"
        native = api.get(path, headers=auth(owner)).json()
        assert native["provider"] == "azure_ad"
        client_id, secret = idp.register_client([native["redirect_uri"]])
        patched = api.patch(path, json={"oidc": {"client_id": client_id, "client_secret": secret}},
                            headers=auth(owner))
        assert patched.status_code == 200, patched.text
        app = api.post("/v1/applications", json={"name": f"Product {RUN}", "redirect_uris": [
            f"http://127.0.0.1:9/{RUN}/callback"]}, headers=auth(live_keyhall.instance_token))
        assert app.status_code == 201, app.text
    s = SignInSetup(live=live_keyhall, idp=idp, org=org, owner=owner, connection=patched.json(),
                    domain=f"logto-{RUN}.test", client_id=app.json()["client_id"],
                    client_secret=app.json()["client_secret"], product_redirect=f"http://127.0.0.1:9/{RUN}/callback")

    assert failure_reason(s, oidc_sign_in(s, "ada").refused(403)) == "tenant_not_configured"
    with live_keyhall.api() as api:
        assert api.patch(path, json={"oidc": {"tenant_id": TENANT}}, headers=auth(owner)).status_code == 200
    assert oidc_sign_in(s, "ada").claims()["email"] == f"ada@{WORKSPACE}"
    assert failure_reason(s, oidc_sign_in(s, "axel").refused(403)) == "tenant_mismatch"
