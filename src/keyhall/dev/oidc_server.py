"""The OpenID Connect side of the test IdP, on Authlib's authorization server: the authorization
code grant (RFC 6749 §4.1) with PKCE S256 (RFC 7636, required of public clients), OpenID Connect
Core 1.0 §3.1 ID tokens (``OpenIDCode``) and the ``iss`` authorization response parameter
(RFC 9207). Authlib validates the requests and shapes the answers; this module only supplies what
it leaves to the server: clients, codes, tokens and the people.

No server-side state: a code and an access token are short-lived JWTs signed RS256 by the IdP's
key (kept in the data directory), so a restart or another worker redeems them. Any client id is
a client (any secret passes: this IdP is for trying Keyhall out), but it redirects only to
Keyhall's own OIDC callbacks (``{public_url}/sso/{id}/oidc/callback``). Pure: no web framework;
``keyhall.dev.idp`` is the HTTP surface.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from keyhall.dev.people import BY_SUB, Person

CODE_SECONDS = 120
TOKEN_SECONDS = 600
SCOPES = ("openid", "email", "profile")
_CALLBACK = re.compile(r"/sso/[A-Za-z0-9-]{1,64}/oidc/callback")  # Keyhall's own OIDC callbacks only
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_USED_CODES_KEPT = 10_000


class Refused(Exception):
    """A request the test IdP answers with an OAuth error and no redirect."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


@dataclass
class Answer:
    """What Authlib answered: a status, a JSON body and headers (``location`` for redirects)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    @location.setter
    def location(self, value: str) -> None:  # RFC 9207's extension rewrites it to add ``iss``
        self.headers["Location"] = value


class Request(OAuth2Request):
    """An HTTP request as Authlib reads it: method, URL, headers, query and form."""

    def __init__(self, method: str, uri: str, headers: dict[str, str], args: dict[str, str],
                 form: dict[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        self._args, self._form = args, form
        self.payload = BasicOAuth2Payload({**args, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass(frozen=True)
class Client(ClientMixin):
    """Any client id the test IdP is asked about; it answers Keyhall's callbacks only."""

    client_id: str
    public_url: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # every request names its redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri.startswith(self.public_url + "/") and bool(
            _CALLBACK.fullmatch(redirect_uri.removeprefix(self.public_url)))

    def check_client_secret(self, client_secret: str) -> bool:
        return True  # a test IdP: whatever secret the connection was given passes

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("none", "client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass(frozen=True)
class Code(AuthorizationCodeMixin):
    """A code, read back from its JWT."""

    claims: dict[str, Any]

    def get_redirect_uri(self) -> str:
        return str(self.claims["redirect_uri"])

    def get_scope(self) -> str:
        return str(self.claims["scope"])

    def get_nonce(self) -> str | None:
        return self.claims.get("nonce")

    def get_auth_time(self) -> int:
        return int(self.claims["auth_time"])

    def get_amr(self) -> list[str]:
        return ["pwd"]


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
    server: DevAuthorizationServer

    def generate_authorization_code(self) -> str:
        request, person = self.request, self.request.user
        data = request.payload.data
        return self.server.sign("code", CODE_SECONDS, {
            "sub": person.sub, "client_id": request.payload.client_id, "redirect_uri": request.payload.redirect_uri,
            "scope": request.payload.scope, "nonce": data.get("nonce"), "challenge": data.get("code_challenge"),
            "challenge_method": data.get("code_challenge_method"), "auth_time": int(time.time())})

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        pass  # the code is its own record

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        claims = self.server.read(code, "code")
        if claims is None or claims.get("client_id") != client.client_id or self.server.was_used(claims["jti"]):
            return None
        return Code(claims)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.use(authorization_code.claims["jti"])

    def authenticate_user(self, authorization_code: Code) -> Person | None:
        return BY_SUB.get(str(authorization_code.claims["sub"]))


class S256Only(CodeChallenge):
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def get_authorization_code_challenge(self, authorization_code: Code) -> str | None:
        return authorization_code.claims.get("challenge")

    def get_authorization_code_challenge_method(self, authorization_code: Code) -> str | None:
        return authorization_code.claims.get("challenge_method")


class IdToken(OpenIDCode):
    def __init__(self, server: DevAuthorizationServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # no state is kept; the relying party checks its nonce

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.server.key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, Any]:
        return {"alg": "RS256", "kid": self.server.key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.server.issuer, "aud": client.client_id, "exp": int(time.time()) + TOKEN_SECONDS}

    def generate_user_info(self, user: Person, scope: str) -> UserInfo:
        return UserInfo(claims_for(user, scope))


def claims_for(person: Person, scope: str) -> dict[str, Any]:
    """OpenID Connect Core 1.0 §5.4: the claims each scope asks for."""
    granted, everything = set(scope.split()), person.claims()
    names = {"sub"} | ({"email", "email_verified"} if "email" in granted else set()) | (
        {"name", "given_name", "family_name"} if "profile" in granted else set())
    return {k: v for k, v in everything.items() if k in names}


class Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class DevAuthorizationServer(AuthorizationServer):
    """Authlib's authorization server, wired to the test IdP's key, people and rules."""

    def __init__(self, public_url: str, issuer: str, key: RSAKey) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.public_url, self.issuer, self.key = public_url, issuer, key
        self._used: dict[str, float] = {}
        self.register_grant(CodeGrant, [IdToken(self), S256Only(required=True)])
        self.register_extension(Issuer(issuer))
        self.register_token_generator("default", self._access_token)

    # What Authlib leaves to the server.
    def query_client(self, client_id: str) -> Client | None:
        return Client(client_id, self.public_url) if _CLIENT_ID.fullmatch(client_id or "") else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        pass  # the access token is its own record

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Request) -> Request:
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("the test IdP has no JSON endpoints")

    def handle_response(self, status: int, body: Any, headers: Any) -> Answer:
        return Answer(status, dict(body or {}), dict(headers or []))

    def _access_token(self, grant_type: str, client: Client, user: Person, scope: str, expires_in: int | None,
                      include_refresh_token: bool) -> dict[str, Any]:
        token = self.sign("access token", TOKEN_SECONDS, {"sub": user.sub, "scope": scope})
        return {"token_type": "Bearer", "access_token": token, "expires_in": TOKEN_SECONDS, "scope": scope}

    # The JWTs that stand for codes and access tokens.
    def sign(self, purpose: str, seconds: int, claims: dict[str, Any]) -> str:
        now = int(time.time())
        body = {**claims, "purpose": purpose, "iss": self.issuer, "iat": now, "exp": now + seconds,
                "jti": secrets.token_urlsafe(12)}
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, body, self.key)

    def read(self, token: str, purpose: str) -> dict[str, Any] | None:
        """The claims of a JWT this IdP signed for ``purpose`` and that has not expired, else None."""
        try:
            claims = dict(jwt.decode(token, self.key, algorithms=["RS256"]).claims)
        except (JoseError, ValueError):
            return None
        if claims.get("purpose") != purpose or claims.get("iss") != self.issuer:
            return None
        return claims if int(claims.get("exp", 0)) >= time.time() else None

    def was_used(self, jti: str) -> bool:
        return jti in self._used

    def use(self, jti: str) -> None:
        """A redeemed code is refused again (by this process; codes live two minutes)."""
        now = time.time()
        if len(self._used) >= _USED_CODES_KEPT:
            self._used = {j: t for j, t in self._used.items() if t > now - CODE_SECONDS}
        self._used[jti] = now

    # The two steps of a sign-in, as the HTTP surface calls them.
    def check(self, request: Request, person: Person | None = None) -> CodeGrant:
        """Validate an authorization request; ``Refused`` when it cannot be answered by a redirect."""
        try:
            grant: CodeGrant = self.get_consent_grant(request, end_user=person)
        except OAuth2Error as error:
            raise Refused(error.error, error.description or error.error) from error
        return grant

    def authorize(self, request: Request, person: Person) -> str:
        """Where the browser goes once ``person`` was chosen: the callback with a code (or an error)."""
        grant = self.check(request, person)
        answer: Answer = self.create_authorization_response(request, grant_user=person, grant=grant)
        if answer.location is None:
            raise Refused(str(answer.body.get("error")), str(answer.body.get("error_description", "")))
        return answer.location

    def token(self, request: Request) -> Answer:
        answer: Answer = self.create_token_response(request)
        return answer

