"""Helpers for the trust-boundary tests (tests/integration/test_trust_*.py): an OIDC sign-in through
the live Keyhall and the real npm oidc-provider, played by httpx, up to the product's tokens or to
Keyhall's refusal page."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.oidc_idp import OidcIdp

REFUSED_HEADING = "We could not sign you in"


def oidc_tenant(live: LiveKeyhall, idp: OidcIdp, name: str, *, domains: list[str],
                **connection: Any) -> SignInSetup:
    """An organization whose OIDC connection (to ``idp``) routes ``domains``; ``connection``
    adds top-level fields (``provider``, ``require_verified_email``, ...) or an ``oidc`` block."""
    oidc = {"issuer": idp.issuer, "client_id": "pending", "scope": "openid profile email groups",
            **connection.pop("oidc", {})}
    return make_signin_setup(live, idp, name, connection_extra={"domains": domains, "oidc": oidc, **connection})


def product_client(s: SignInSetup, scope: str = "openid email profile groups") -> OAuth2Client:
    return OAuth2Client(client_id=s.client_id, client_secret=s.client_secret, scope=scope,
                        redirect_uri=s.product_redirect, code_challenge_method="S256", trust_env=False, timeout=15)


@dataclass
class Attempt:
    """One sign-in: the URL Keyhall sent the browser to, and Keyhall's answer to the IdP's callback."""

    setup: SignInSetup
    idp_url: str
    answer: httpx.Response
    verifier: str
    nonce: str
    browser_cookies: dict[str, str] = field(default_factory=dict)

    @property
    def idp_params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.idp_url).query).items()}

    def claims(self) -> dict[str, Any]:
        """The product redeems the code; returns the verified ID token's claims."""
        s = self.setup
        assert self.answer.status_code == 303, self.answer.text[:2000]
        callback = self.answer.headers["location"]
        assert callback.startswith(s.product_redirect + "?"), callback
        code = parse_qs(urlsplit(callback).query)["code"][0]
        tokens = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, timeout=15,
                            auth=(s.client_id, s.client_secret or ""),
                            data={"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": s.product_redirect, "code_verifier": self.verifier})
        assert tokens.status_code == 200, tokens.text
        keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False).json())
        decoded = jwt.decode(tokens.json()["id_token"], keys, algorithms=["RS256", "ES256"])
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": s.live.url},
                              aud={"essential": True, "value": s.client_id},
                              nonce={"essential": True, "value": self.nonce}).validate(decoded.claims)
        return dict(decoded.claims)

    def refused(self, status: int = 403) -> str:
        """Keyhall's refusal page (no code for the product); returns its request id."""
        assert self.answer.status_code == status, (self.answer.status_code, self.answer.text[:2000])
        assert "location" not in self.answer.headers
        assert REFUSED_HEADING in self.answer.text
        return self.answer.headers["x-request-id"]


def oidc_sign_in(s: SignInSetup, login: str, *, before_callback: Any = None, **params: str) -> Attempt:
    """The product sends a browser to Keyhall (by default pinned to ``s``'s connection), the person
    signs in at the IdP as ``login``, and the browser brings the answer back to Keyhall."""
    params = {"connection": s.connection["id"], **params}
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier=verifier,
                                                       nonce=nonce, **params)
        started = browser.get(url)
        assert started.status_code == 303, started.text[:2000]
        idp_url = started.headers["location"]
        assert idp_url.startswith(s.idp.base_url), idp_url
        callback = s.idp.scripted_login(idp_url, login)
        assert callback.startswith(f"{s.live.url}/sso/{s.connection['id']}/oidc/callback"), callback
        if before_callback is not None:
            before_callback()
        answer = browser.get(callback)
        return Attempt(setup=s, idp_url=idp_url, answer=answer, verifier=verifier, nonce=nonce,
                       browser_cookies=dict(browser.cookies))


def login_failures(s: SignInSetup) -> list[dict[str, Any]]:
    """The organization's login.failed audit events, oldest first."""
    with s.live.api() as api:
        response = api.get(f"/v1/organizations/{s.org['id']}/audit-events", params={"action": "login.failed"},
                           headers=auth(s.owner))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]
    return events


def failure_reason(s: SignInSetup, request_id: str) -> str:
    found = [e for e in login_failures(s) if e["request_id"] == request_id]
    assert len(found) == 1, login_failures(s)
    return str(found[0]["changes"]["reason"])


def new_organization(live: LiveKeyhall, name: str) -> tuple[dict[str, Any], str]:
    """An organization and its owner's API key."""
    from keyhall.core.vocabulary import Role

    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"{name} {secrets.token_hex(4)}"},
                       headers=auth(live.instance_token))
    assert org.status_code == 201, org.text
    return org.json(), live.issue_key(org.json()["id"], Role.OWNER)
