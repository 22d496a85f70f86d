"""The test identity provider of development mode: OpenID Connect under ``/_dev/idp/``.

A few sample people, chosen on a page instead of a password; the authorization code flow with
PKCE; ID tokens signed RS256 by a key kept in the data directory (``dev-idp-key.json``), so a
restart (or another worker) signs with the same key. Codes and access tokens are short-lived JWTs
signed by that key (no server-side state): this IdP is for trying Keyhall out, never for production.
It redirects only to Keyhall's own OIDC callbacks (``{public_url}/sso/{id}/oidc/callback``). JOSE is joserfc's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from keyhall.dev.pages import dev_page
from keyhall.security.private_files import create_private_file
from keyhall.settings import Settings

PREFIX = "/_dev/idp"
KEY_FILE = "dev-idp-key.json"
CODE_SECONDS = 120
_CALLBACK = re.compile(r"/sso/[A-Za-z0-9-]{1,64}/oidc/callback")  # Keyhall's own OIDC callbacks only
TOKEN_SECONDS = 600


@dataclass(frozen=True)
class Person:
    sub: str
    email: str
    given_name: str
    family_name: str

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def claims(self) -> dict[str, Any]:
        return {"sub": self.sub, "email": self.email, "email_verified": True, "name": self.name,
                "given_name": self.given_name, "family_name": self.family_name}


PEOPLE = (
    Person("dev-alice", "alice@example.com", "Alice", "Archer"),
    Person("dev-bob", "bob@example.com", "Bob", "Baker"),
    Person("dev-carol", "carol@example.com", "Carol", "Carter"),
)
_BY_SUB = {p.sub: p for p in PEOPLE}


class Refused(Exception):
    """A request the test IdP will not answer (400 with an OAuth error)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def load_key(data_dir: Path) -> RSAKey:
    """The IdP's signing key, created on first use (0600) in the data directory."""
    path = data_dir / KEY_FILE
    if not path.exists():
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
        draft = data_dir / f".{KEY_FILE}.{secrets.token_hex(8)}"
        create_private_file(draft)
        draft.write_text(json.dumps(key.as_dict(private=True)))
        try:
            os.link(draft, path)  # whole or not at all; a key another worker placed first wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return RSAKey.import_key(json.loads(path.read_text()))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class DevIdp:
    """The IdP's issuer (``{public_url}/_dev/idp``), key and the Keyhall it sends people back to."""

    public_url: str
    key: RSAKey

    @classmethod
    def for_settings(cls, settings: Settings) -> DevIdp:
        return cls(public_url=settings.public_url, key=load_key(settings.data_dir))

    @property
    def issuer(self) -> str:
        return self.public_url + PREFIX

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"], "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"], "claims_supported": [
                "sub", "email", "email_verified", "name", "given_name", "family_name"],
            "authorization_response_iss_parameter_supported": True,
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}, claims, self.key)

    def _read(self, token: str, purpose: str) -> dict[str, Any]:
        try:
            claims = dict(jwt.decode(token, self.key, algorithms=["RS256"]).claims)
        except (JoseError, ValueError) as exc:
            raise Refused("invalid_grant", f"the {purpose} is not one this IdP issued") from exc
        if claims.get("purpose") != purpose or claims.get("iss") != self.issuer:
            raise Refused("invalid_grant", f"the {purpose} is not one this IdP issued")
        if int(claims.get("exp", 0)) < time.time():
            raise Refused("invalid_grant", f"the {purpose} has expired")
        return claims

    def check_request(self, params: dict[str, str]) -> None:
        """Refuse an authorization request this IdP will not answer."""
        redirect_uri = params.get("redirect_uri", "")
        if not _CALLBACK.fullmatch(redirect_uri.removeprefix(self.public_url)) or \
                not redirect_uri.startswith(self.public_url):
            raise Refused("invalid_request", "redirect_uri: this test IdP answers only Keyhall's own callbacks")
        if not params.get("client_id"):
            raise Refused("invalid_request", "client_id: missing")
        if params.get("response_type") != "code":
            raise Refused("unsupported_response_type", "response_type: only code")
        if params.get("code_challenge_method", "S256") != "S256":
            raise Refused("invalid_request", "code_challenge_method: only S256")

    def code_redirect(self, params: dict[str, str], person: Person) -> str:
        """Where the browser goes after ``person`` was chosen: the callback with a code and the state."""
        self.check_request(params)
        now = int(time.time())
        code = self._sign({"purpose": "code", "iss": self.issuer, "sub": person.sub, "exp": now + CODE_SECONDS,
                           "client_id": params["client_id"], "redirect_uri": params["redirect_uri"],
                           "nonce": params.get("nonce"), "challenge": params.get("code_challenge"),
                           "auth_time": now, "jti": secrets.token_urlsafe(12)})
        answer = {"code": code, "iss": self.issuer}
        if params.get("state"):
            answer["state"] = params["state"]
        return f"{params['redirect_uri']}?{urlencode(answer)}"

    def exchange(self, form: dict[str, str], basic_client_id: str | None) -> dict[str, Any]:
        """The token endpoint: a code (and its PKCE verifier) for an ID token and an access token."""
        if form.get("grant_type") != "authorization_code":
            raise Refused("unsupported_grant_type", "grant_type: only authorization_code")
        grant = self._read(form.get("code", ""), "code")
        client_id = basic_client_id or form.get("client_id")
        if client_id != grant["client_id"] or form.get("redirect_uri") != grant["redirect_uri"]:
            raise Refused("invalid_grant", "the code was issued to another client or redirect_uri")
        if grant.get("challenge"):
            verifier = form.get("code_verifier", "")
            if not hmac.compare_digest(s256(verifier), str(grant["challenge"])):
                raise Refused("invalid_grant", "code_verifier: does not match the code_challenge")
        person = _BY_SUB[str(grant["sub"])]
        now = int(time.time())
        id_claims = {**person.claims(), "iss": self.issuer, "aud": grant["client_id"], "iat": now,
                     "exp": now + TOKEN_SECONDS, "auth_time": grant["auth_time"], "amr": ["pwd"]}
        if grant.get("nonce"):
            id_claims["nonce"] = grant["nonce"]
        access = self._sign({"purpose": "access token", "iss": self.issuer, "sub": person.sub,
                             "exp": now + TOKEN_SECONDS})
        return {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                "id_token": self._sign(id_claims)}

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Refused("invalid_token", "a bearer access token is needed")
        return _BY_SUB[str(self._read(token, "access token")["sub"])].claims()


router = APIRouter(prefix=PREFIX, tags=["development"], include_in_schema=False)
AUTHORIZE_FIELDS = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
                    "code_challenge_method", "login_hint")


def _idp(request: Request) -> DevIdp:
    found: DevIdp = request.app.state.dev_idp
    return found


def _refused(exc: Refused, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=status,
                        headers={"Cache-Control": "no-store"})


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
        _idp(request).check_request(params)
    except Refused as exc:
        return dev_page("idp_error.html", status=400, title="Test IdP", message=exc.description)
    return dev_page("idp_choose.html", title="Test identity provider", people=PEOPLE, params=params,
                    hint=params.get("login_hint", ""))


@router.post("/authorize")
async def choose(request: Request) -> Response:
    form = await request.form()
    params = {k: str(v)[:4096] for k, v in form.items() if k in AUTHORIZE_FIELDS}
    person = _BY_SUB.get(str(form.get("person", "")))
    if person is None:
        return dev_page("idp_error.html", status=400, title="Test IdP", message="person: choose one of the people")
    try:
        location = _idp(request).code_redirect(params, person)
    except Refused as exc:
        return dev_page("idp_error.html", status=400, title="Test IdP", message=exc.description)
    return RedirectResponse(location, status_code=303)


@router.post("/token")
async def token(request: Request) -> Response:
    form = {k: str(v)[:8192] for k, v in (await request.form()).items()}
    basic = None
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            basic = unquote_plus(base64.b64decode(value).decode("utf-8").partition(":")[0]) or None
        except ValueError:
            return _refused(Refused("invalid_client", "malformed basic credentials"), 401)
    try:
        return JSONResponse(_idp(request).exchange(form, basic), headers={"Cache-Control": "no-store"})
    except Refused as exc:
        return _refused(exc)


@router.get("/userinfo")
def userinfo(request: Request) -> Response:
    try:
        return JSONResponse(_idp(request).userinfo(request.headers.get("authorization")),
                            headers={"Cache-Control": "no-store"})
    except Refused as exc:
        return _refused(exc, 401)
