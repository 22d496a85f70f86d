"""The example product of development mode, under ``/_dev/app``: a "Sign in" button that starts
Keyhall's authorization code flow with PKCE as a registered (public) application, the callback that
redeems the code at Keyhall's ``/oauth2/token`` and verifies the ID token with Keyhall's JWKS,
and a page showing its claims.

It is what a product does, written the plain way (httpx, joserfc); the state, nonce and code
verifier of a sign-in in progress wait in an HttpOnly cookie scoped to ``/_dev/app``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from keyhall.dev.pages import dev_page
from keyhall.protocols.oidc.pkce import s256_challenge

PREFIX = "/_dev/app"
COOKIE = "keyhall_dev_app"
SCOPE = "openid email profile"

router = APIRouter(prefix=PREFIX, tags=["development"], include_in_schema=False)


@dataclass(frozen=True)
class Demo:
    """What seeding registered: the example product's client id and the demo organization's slug."""

    public_url: str
    client_id: str
    organization: str
    oidc_connection: str | None = None
    saml_connection: str | None = None

    @property
    def redirect_uri(self) -> str:
        return self.public_url + PREFIX + "/callback"


def _demo(request: Request) -> Demo:
    found: Demo = request.app.state.dev_demo
    return found


@router.get("")
def home(request: Request) -> Response:
    demo = _demo(request)
    return dev_page("app.html", title="Example product", client_id=demo.client_id, organization=demo.organization,
                    saml=demo.saml_connection is not None)


@router.get("/login")
def login(request: Request, via: str = "") -> Response:
    """Start a sign-in: through the organization's default connection, or ``via`` its OIDC or SAML one."""
    demo = _demo(request)
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
    pinned = {"oidc": demo.oidc_connection, "saml": demo.saml_connection}.get(via)
    query = urlencode({"response_type": "code", "client_id": demo.client_id, "redirect_uri": demo.redirect_uri,
                       "scope": SCOPE, "state": state, "nonce": nonce, "code_challenge": s256_challenge(verifier),
                       "code_challenge_method": "S256", "organization": demo.organization,
                       **({"connection": pinned} if pinned else {})})
    response = RedirectResponse(f"{demo.public_url}/oauth2/authorize?{query}", status_code=303)
    response.set_cookie(COOKIE, f"{state}.{nonce}.{verifier}", max_age=900, httponly=True, samesite="lax",
                        secure=demo.public_url.startswith("https://"), path=PREFIX)
    return response


def _failed(demo: Demo, message: str) -> Response:
    return dev_page("app.html", status=400, title="Example product", error=message, client_id=demo.client_id,
                    organization=demo.organization)


def redeem(demo: Demo, code: str, verifier: str, nonce: str) -> dict[str, Any]:
    """The product's back channel: the code for tokens, then the ID token verified."""
    with httpx.Client(base_url=demo.public_url, timeout=15, trust_env=False) as keyhall:
        tokens = keyhall.post("/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": demo.redirect_uri,
            "client_id": demo.client_id, "code_verifier": verifier})
        if tokens.status_code != 200:
            raise ValueError(f"Keyhall refused the code: {tokens.text[:300]}")
        keys = KeySet.import_key_set(keyhall.get("/oauth2/jwks").json())
    decoded = jwt.decode(tokens.json()["id_token"], keys, algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": demo.public_url},
                          aud={"essential": True, "value": demo.client_id},
                          nonce={"essential": True, "value": nonce}).validate(decoded.claims)
    return dict(decoded.claims)


@router.get("/callback")
def callback(request: Request) -> Response:
    demo = _demo(request)
    params = request.query_params
    state, _, rest = request.cookies.get(COOKIE, "").partition(".")
    nonce, _, verifier = rest.partition(".")
    if "error" in params:
        return _failed(demo, f"Keyhall answered {params['error'][:100]}: {params.get('error_description', '')[:300]}")
    if not state or not secrets.compare_digest(state, params.get("state", "")):
        return _failed(demo, "state: this answer is not for the sign-in this browser started; sign in again")
    try:
        claims = redeem(demo, params.get("code", ""), verifier, nonce)
    except (ValueError, JoseError, httpx.HTTPError) as exc:
        return _failed(demo, f"The sign-in could not be completed: {exc}")
    response = dev_page("app.html", title="Example product", claims=claims,
                        claims_json=json.dumps(claims, indent=2, sort_keys=True))
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
