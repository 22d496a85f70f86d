"""The test identity provider of development mode, under ``/_dev/idp/``: its OpenID Connect
endpoints (the authorization server is Authlib's, in ``keyhall.dev.oidc_server``) and the page
where a sample person is picked instead of typing a password. The SAML side is
``keyhall.dev.saml_idp``; both sign with keys kept in the data directory (``keyhall.dev.keys``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oidc.discovery import OpenIDProviderMetadata
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from joserfc.jwk import RSAKey

from keyhall.dev.keys import load_key
from keyhall.dev.oidc_server import SCOPES, DevAuthorizationServer, Refused, claims_for
from keyhall.dev.oidc_server import Request as OAuthRequest
from keyhall.dev.pages import dev_page
from keyhall.dev.people import BY_SUB, PEOPLE
from keyhall.settings import Settings

PREFIX = "/_dev/idp"
AUTHORIZE_FIELDS = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
                    "code_challenge_method", "login_hint", "prompt")


@dataclass(frozen=True)
class DevIdp:
    """The IdP's issuer (``{public_url}/_dev/idp``), its OIDC key and authorization server."""

    public_url: str
    key: RSAKey

    @classmethod
    def for_settings(cls, settings: Settings) -> DevIdp:
        return cls(public_url=settings.public_url, key=load_key(settings.data_dir))

    @property
    def issuer(self) -> str:
        return self.public_url + PREFIX

    def server(self) -> DevAuthorizationServer:
        return DevAuthorizationServer(self.public_url, self.issuer, self.key)

    def metadata(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0 §3, checked by Authlib's model of it."""
        found = OpenIDProviderMetadata({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(SCOPES), "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"], "claims_supported": [
                "sub", "email", "email_verified", "name", "given_name", "family_name"],
            "authorization_response_iss_parameter_supported": True,
        })
        found.validate()
        return dict(found)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def userinfo(self, server: DevAuthorizationServer, authorization: str | None) -> dict[str, Any] | None:
        """The claims an access token's scope grants, or None for no valid bearer token."""
        scheme, _, token = (authorization or "").partition(" ")
        claims = server.read(token, "access token") if scheme.lower() == "bearer" else None
        person = BY_SUB.get(str(claims["sub"])) if claims else None
        return claims_for(person, str(claims["scope"])) if claims and person else None


router = APIRouter(prefix=PREFIX, tags=["development"], include_in_schema=False)


def _idp(request: Request) -> DevIdp:
    found: DevIdp = request.app.state.dev_idp
    return found


def _server(request: Request) -> DevAuthorizationServer:
    found: DevAuthorizationServer = request.app.state.dev_oidc
    return found


def _oauth_request(request: Request, args: dict[str, str], form: dict[str, str]) -> OAuthRequest:
    return OAuthRequest(request.method, _idp(request).public_url + request.url.path, dict(request.headers),
                        args, form)


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "Cache-Control": "no-store"})


def _refused_page(description: str) -> Response:
    return dev_page("idp_error.html", status=400, title="Test identity provider: request refused",
                    message=description)


@router.get("/.well-known/openid-configuration")
def discovery(request: Request) -> dict[str, Any]:
    return _idp(request).metadata()


@router.get("/jwks")
def jwks(request: Request) -> dict[str, Any]:
    return _idp(request).jwks()


@router.get("/authorize")
def authorize(request: Request) -> Response:
    params = {k: v[:4096] for k, v in request.query_params.items() if k in AUTHORIZE_FIELDS}
    try:
        _server(request).check(_oauth_request(request, params, {}))
    except Refused as exc:
        return _refused_page(exc.description)
    return dev_page("idp_choose.html", title="Test identity provider", people=PEOPLE, params=params,
                    action=f"{PREFIX}/authorize", hint=params.get("login_hint", ""))


@router.post("/authorize")
async def choose(request: Request) -> Response:
    form = await request.form()
    params = {k: str(v)[:4096] for k, v in form.items() if k in AUTHORIZE_FIELDS}
    person = BY_SUB.get(str(form.get("person", "")))
    if person is None:
        return _refused_page("person: choose one of the people")
    try:
        location = _server(request).authorize(_oauth_request(request, params, {}), person)
    except Refused as exc:
        return _refused_page(exc.description)
    return RedirectResponse(location, status_code=303)


@router.post("/token")
async def token(request: Request) -> Response:
    form = {k: str(v)[:8192] for k, v in (await request.form()).items()}
    answer = _server(request).token(_oauth_request(request, {}, form))
    return _json(answer.body, answer.status, {k: v for k, v in answer.headers.items()
                                              if k.lower() == "www-authenticate"})


@router.get("/userinfo")
def userinfo(request: Request) -> Response:
    claims = _idp(request).userinfo(_server(request), request.headers.get("authorization"))
    if claims is None:
        return _json({"error": "invalid_token", "error_description": "a valid bearer access token is needed"}, 401,
                     {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return _json(claims)
