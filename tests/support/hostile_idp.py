"""A small, real OpenID provider that misbehaves on purpose: for NEGATIVE sign-ins only.

The real provider (``tests.support.oidc_idp``, npm ``oidc-provider``) never signs a bad ID token,
so the refusals of OpenID Connect Core 1.0 §3.1.3.7 cannot be shown end to end with it. This one
is a threaded ``http.server`` on 127.0.0.1 (a free port) that speaks the authorization code flow
faithfully — discovery, JWKS (an RSA key, via joserfc), an ``/authorize`` that answers at once
(no login page), a ``/token`` that checks the client secret and the PKCE verifier (RFC 7636
§4.6) against what ``/authorize`` received, and ``/userinfo`` — and then answers according to
``mode``: a tampered or wrongly signed ID token, wrong claims, an OAuth error, an HTML page.
``Mode.GOOD`` answers correctly, which shows that the fake is a faithful provider and that each
other mode fails for its one reason. Everything a real provider can do is tested against the
real one.

    with HostileIdp() as idp:
        idp.allow_redirect_uri(connection["redirect_uri"])
        idp.mode = Mode.EXPIRED
        ...  # sign in through Keyhall; idp.authorizations and idp.token_requests say what it saw

Every response closes its connection, so ``stop()`` (for ``Mode.UNREACHABLE``, called by the
test between ``/authorize`` and the callback) returns at once and the port then refuses.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

from joserfc import jws
from joserfc.jwk import RSAKey

from tests.support.static_http import PromptlyClosingHTTPServer

#: How long a code and an ID token live at this provider.
_CODE_SECONDS = 60
_TOKEN_SECONDS = 300


class Mode(StrEnum):
    """What ``/token`` (and ``/userinfo``) answer once the code exchange itself checked out."""

    GOOD = "good"
    TAMPERED_PAYLOAD = "tampered_payload"  # claims changed after signing: the signature no longer holds
    OTHER_KEY_SAME_KID = "other_key_same_kid"  # signed by a key that is not published, under the published kid
    ALG_NONE = "alg_none"  # unsigned (RFC 7519 §6)
    HS256_WITH_PUBLIC_KEY = "hs256_with_public_key"  # the published RSA key used as an HMAC secret
    EMBEDDED_JWK = "embedded_jwk"  # signed by the attacker's key, which the header carries (``jwk``)
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    EXPIRED = "expired"  # exp ten minutes ago: far beyond the clock skew allowed
    IAT_IN_FUTURE = "iat_in_future"  # issued ten minutes from now
    NONCE_MISMATCH = "nonce_mismatch"
    MISSING_NONCE = "missing_nonce"
    USERINFO_SUB_MISMATCH = "userinfo_sub_mismatch"  # userinfo speaks of another subject (§5.3.4)
    TOKEN_ERROR = "token_error"  # the token endpoint refuses with invalid_grant (RFC 6749 §5.2)
    TOKEN_HTML = "token_html"  # the token endpoint answers 200 with an HTML page
    TOKEN_HTML_BAD_GATEWAY = "token_html_bad_gateway"  # a proxy's 502 HTML page instead of JSON
    UNREACHABLE = "unreachable"  # answers like GOOD; the test stops the server before the callback
    TOKEN_HANGS = "token_hangs"  # /token reads the request and never answers (until ``release()`` or stop)
    # Signed correctly, but claims no provider should send; each must be refused or survived, never a 500.
    NAN_EXP = "nan_exp"  # "exp": NaN, which is not JSON (RFC 8259 §6) yet Python's json reads it
    INFINITE_EXP = "infinite_exp"  # "exp": 1e400, a JSON number that reads as infinity
    LONG_SUBJECT = "long_subject"  # a 300-character sub; OIDC Core §2 caps it at 255 ASCII characters
    LONG_EMAIL = "long_email"  # a 400-character email address
    NUL_IN_NAME = "nul_in_name"  # a U+0000 inside the person's name


@dataclass(frozen=True)
class AuthorizationSeen:
    """What ``/authorize`` received (only for requests it accepted)."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None


@dataclass(frozen=True)
class TokenRequestSeen:
    """What ``/token`` found about one request; ``problems`` is empty for a correct exchange."""

    auth_method: str  # client_secret_basic, client_secret_post or none
    problems: tuple[str, ...]


@dataclass(frozen=True)
class RequestSeen:
    """One request as it arrived, whatever its path: for showing what a provider was sent."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: str

    def carries(self, secret: str) -> bool:
        """True when ``secret`` is anywhere in the request: raw, form-encoded, or in HTTP Basic."""
        texts = [self.path, self.body, *(value for _name, value in self.headers)]
        for name, value in self.headers:
            if name.lower() == "authorization" and value.lower().startswith("basic "):
                with contextlib.suppress(ValueError):
                    texts.append(unquote_plus(base64.b64decode(value[6:]).decode("utf-8", "replace")))
        texts += [unquote_plus(text) for text in texts]
        return any(secret in text for text in texts)


@dataclass
class _Grant:
    authorization: AuthorizationSeen
    expires_at: float


@dataclass
class _State:
    issuer: str
    client_id: str
    client_secret: str
    subject: str
    key: RSAKey
    other_key: RSAKey
    mode: Mode = Mode.GOOD
    redirect_uris: set[str] = field(default_factory=set)
    grants: dict[str, _Grant] = field(default_factory=dict)
    access_tokens: set[str] = field(default_factory=set)
    authorizations: list[AuthorizationSeen] = field(default_factory=list)
    token_requests: list[TokenRequestSeen] = field(default_factory=list)
    received: list[RequestSeen] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # codes and tokens handed out, for leak checks
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)  # ends every hanging /token
    hanging: int = 0  # /token requests held right now (Mode.TOKEN_HANGS)
    hung: int = 0  # /token requests ever held


@cache
def _private_jwk(slot: int) -> dict[str, Any]:
    """An RSA private key per slot, made once per test session (key generation is the slow part)."""
    return RSAKey.generate_key(2048, private=True, auto_kid=False).as_dict(private=True)


def _key(slot: int, kid: str) -> RSAKey:
    return RSAKey.import_key(_private_jwk(slot), parameters={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 §4.2)."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


class HostileIdp:
    """One running provider; ``issuer`` is its URL (``http://127.0.0.1:PORT``).

    ``client_id`` / ``client_secret`` are its one confidential client; redirect URIs are
    registered with ``allow_redirect_uri``. ``mode`` may be changed at any time.
    """

    def __init__(self) -> None:
        self._server = _Server()
        self.port: int = self._server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        kid = f"hostile-{secrets.token_hex(4)}"
        self._server.state = _State(
            issuer=self.issuer,
            client_id=f"keyhall-{secrets.token_hex(6)}",
            client_secret=secrets.token_urlsafe(32),
            subject=f"user-{secrets.token_hex(6)}",
            key=_key(0, kid),
            other_key=_key(1, kid),
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="hostile-idp", daemon=True
        )
        self._thread.start()
        self._stopped = False

    def __enter__(self) -> HostileIdp:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def _state(self) -> _State:
        return self._server.state

    @property
    def client_id(self) -> str:
        return self._state.client_id

    @property
    def client_secret(self) -> str:
        return self._state.client_secret

    @property
    def subject(self) -> str:
        """The ``sub`` of the one person who signs in here."""
        return self._state.subject

    @property
    def mode(self) -> Mode:
        return self._state.mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._state.mode = mode

    def allow_redirect_uri(self, uri: str) -> None:
        self._state.redirect_uris.add(uri)

    def url(self, path: str) -> str:
        return self.issuer + path

    @property
    def authorizations(self) -> list[AuthorizationSeen]:
        with self._state.lock:
            return list(self._state.authorizations)

    @property
    def token_requests(self) -> list[TokenRequestSeen]:
        with self._state.lock:
            return list(self._state.token_requests)

    @property
    def received(self) -> list[RequestSeen]:
        """Every request that reached the provider, in order."""
        with self._state.lock:
            return list(self._state.received)

    @property
    def issued(self) -> list[str]:
        """Every code, access token and ID token handed out, to check that none leaks."""
        with self._state.lock:
            return list(self._state.issued)

    @property
    def hanging(self) -> int:
        """How many ``/token`` requests are being held unanswered right now (``Mode.TOKEN_HANGS``)."""
        with self._state.lock:
            return self._state.hanging

    @property
    def hung(self) -> int:
        """How many ``/token`` requests were ever held (``Mode.TOKEN_HANGS``)."""
        with self._state.lock:
            return self._state.hung

    def release(self) -> None:
        """End every held ``/token`` request (its connection closes without an answer)."""
        self._state.release.set()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._state.release.set()  # server_close() joins the handler threads: free the held ones first
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- the provider --------------------------------------------------------------------------------


class _Server(PromptlyClosingHTTPServer):
    state: _State

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up closes its socket; that is expected here."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 5

    def _record(self, body: str) -> None:
        seen = RequestSeen(self.command, self.path, tuple(self.headers.items()), body)
        with self.server.state.lock:
            self.server.state.received.append(seen)

    def do_GET(self) -> None:
        self._record("")
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            self._json(200, self._discovery())
        elif url.path == "/jwks":
            self._json(200, {"keys": [self.server.state.key.as_dict(private=False, use="sig", alg="RS256")]})
        elif url.path == "/authorize":
            self._authorize(query)
        elif url.path == "/userinfo":
            self._userinfo()
        else:
            self._send(404, "text/plain", b"not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        self._record(body)
        if urlsplit(self.path).path != "/token":
            self._send(404, "text/plain", b"not found")
            return
        form = {name: values[0] for name, values in parse_qs(body).items()}
        if self.server.state.mode is Mode.TOKEN_HANGS:
            self._hang()
            return
        self._token(form)

    def _hang(self) -> None:
        """Hold the request unanswered, as a provider whose back end froze does, then drop it."""
        state = self.server.state
        with state.lock:
            state.hanging += 1
            state.hung += 1
        try:
            state.release.wait(timeout=120)
        finally:
            with state.lock:
                state.hanging -= 1
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the test's own output."""

    # --- endpoints ---------------------------------------------------------------------------

    def _discovery(self) -> dict[str, Any]:
        issuer = self.server.state.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code"],
            "authorization_response_iss_parameter_supported": True,
        }

    def _authorize(self, query: dict[str, str]) -> None:
        state = self.server.state
        if query.get("client_id") != state.client_id or query.get("redirect_uri") not in state.redirect_uris:
            self._send(400, "text/plain", b"unknown client or redirect_uri")  # never redirect to an unknown URI
            return
        seen = AuthorizationSeen(
            client_id=query["client_id"],
            redirect_uri=query["redirect_uri"],
            scope=query.get("scope", ""),
            state=query.get("state", ""),
            nonce=query.get("nonce"),
            code_challenge=query.get("code_challenge"),
            code_challenge_method=query.get("code_challenge_method"),
        )
        answer: dict[str, str] = {"state": seen.state, "iss": state.issuer}
        if query.get("response_type") != "code" or "openid" not in seen.scope.split():
            answer["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(24)
            with state.lock:
                state.authorizations.append(seen)
                state.grants[code] = _Grant(seen, time.time() + _CODE_SECONDS)
                state.issued.append(code)
            answer["code"] = code
        separator = "&" if "?" in seen.redirect_uri else "?"
        self._send(302, "text/plain", b"", location=f"{seen.redirect_uri}{separator}{urlencode(answer)}")

    def _token(self, form: dict[str, str]) -> None:
        state = self.server.state
        auth_method, client_id, secret = self._client_credentials(form)
        with state.lock:
            grant = state.grants.pop(form.get("code", ""), None)  # single use, whatever happens next
        problems: list[str] = []
        if client_id != state.client_id or secret is None or not hmac.compare_digest(secret, state.client_secret):
            problems.append("client authentication failed")
        if form.get("grant_type") != "authorization_code":
            problems.append("grant_type is not authorization_code")
        if grant is None or grant.expires_at < time.time():
            problems.append("unknown, used or expired code")
        else:
            seen = grant.authorization
            if form.get("redirect_uri") != seen.redirect_uri:
                problems.append("redirect_uri differs from the authorization request's")
            verifier = form.get("code_verifier")
            if seen.code_challenge_method != "S256" or not seen.code_challenge:
                problems.append("the authorization request carried no S256 code challenge")
            elif not verifier or not hmac.compare_digest(s256(verifier), seen.code_challenge):
                problems.append("code_verifier does not match the code challenge")
        with state.lock:
            state.token_requests.append(TokenRequestSeen(auth_method, tuple(problems)))
        if problems:
            error = "invalid_client" if problems[0].startswith("client") else "invalid_grant"
            self._json(401 if error == "invalid_client" else 400, {"error": error, "error_description": problems[0]})
            return
        assert grant is not None
        self._token_answer(grant.authorization)

    def _token_answer(self, seen: AuthorizationSeen) -> None:
        state, mode = self.server.state, self.server.state.mode
        if mode is Mode.TOKEN_ERROR:
            self._json(400, {"error": "invalid_grant", "error_description": "The authorization code has expired"})
            return
        if mode in {Mode.TOKEN_HTML, Mode.TOKEN_HTML_BAD_GATEWAY}:
            page = b"<!doctype html><html><body><h1>Service temporarily unavailable</h1></body></html>"
            self._send(502 if mode is Mode.TOKEN_HTML_BAD_GATEWAY else 200, "text/html; charset=utf-8", page)
            return
        access_token = secrets.token_urlsafe(32)
        id_token = _id_token(state, seen, mode)
        with state.lock:
            state.access_tokens.add(access_token)
            state.issued += [access_token, id_token]
        self._json(200, {"access_token": access_token, "token_type": "Bearer", "expires_in": _TOKEN_SECONDS,
                         "id_token": id_token, "scope": seen.scope})

    def _userinfo(self) -> None:
        state = self.server.state
        authorization = self.headers.get("Authorization", "")
        token = authorization[7:] if authorization.lower().startswith("bearer ") else ""
        with state.lock:
            known = token in state.access_tokens
        if not known:
            self._send(401, "application/json", b'{"error":"invalid_token"}',
                       extra={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return
        subject = "someone-else" if state.mode is Mode.USERINFO_SUB_MISMATCH else _subject(state)
        self._json(200, {**_profile(state), "sub": subject})

    # --- plumbing ----------------------------------------------------------------------------

    def _client_credentials(self, form: dict[str, str]) -> tuple[str, str | None, str | None]:
        """(method, client_id, secret) from HTTP Basic (RFC 6749 §2.3.1) or the form."""
        authorization = self.headers.get("Authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                pair = base64.b64decode(authorization[6:], validate=True).decode("utf-8")
            except ValueError:
                return "client_secret_basic", None, None
            client_id, _colon, secret = pair.partition(":")
            return "client_secret_basic", unquote_plus(client_id), unquote_plus(secret)
        if "client_secret" in form:
            return "client_secret_post", form.get("client_id"), form["client_secret"]
        return "none", form.get("client_id"), None

    def _json(self, status: int, document: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(document).encode("utf-8"),
                   extra={"Cache-Control": "no-store"})

    def _send(self, status: int, content_type: str, body: bytes, *, location: str | None = None,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")  # nothing idles on a keep-alive socket at stop()
        if location is not None:
            self.send_header("Location", location)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


# --- ID tokens -------------------------------------------------------------------------------------


def _subject(state: _State) -> str:
    return state.subject + "-" + "s" * 300 if state.mode is Mode.LONG_SUBJECT else state.subject


def _profile(state: _State) -> dict[str, Any]:
    local = state.subject + ("." + "e" * 380 if state.mode is Mode.LONG_EMAIL else "")
    name = "Hostile\u0000Test User" if state.mode is Mode.NUL_IN_NAME else "Hostile Test User"
    return {"email": f"{local}@hostile.example", "email_verified": True, "name": name}


def _id_token(state: _State, seen: AuthorizationSeen, mode: Mode) -> str:
    """The ID token ``mode`` calls for; every mode but GOOD is wrong in exactly one way."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": state.issuer, "sub": _subject(state), "aud": state.client_id,
                              "exp": now + _TOKEN_SECONDS, "iat": now, "auth_time": now, **_profile(state)}
    if seen.nonce is not None:
        claims["nonce"] = seen.nonce
    if mode is Mode.WRONG_AUDIENCE:
        claims["aud"] = "another-client"
    elif mode is Mode.WRONG_ISSUER:
        claims["iss"] = "https://idp.attacker.example"
    elif mode is Mode.EXPIRED:
        claims["iat"], claims["exp"] = now - 900, now - 600
    elif mode is Mode.IAT_IN_FUTURE:
        claims["iat"], claims["exp"] = now + 600, now + 600 + _TOKEN_SECONDS
    elif mode is Mode.NONCE_MISMATCH:
        claims["nonce"] = secrets.token_urlsafe(24)
    elif mode is Mode.MISSING_NONCE:
        claims.pop("nonce", None)
    elif mode is Mode.NAN_EXP:
        claims["exp"] = float("nan")
    elif mode is Mode.INFINITE_EXP:
        claims["exp"] = float("inf")  # json.dumps writes Infinity: rewritten below as 1e400
    kid = state.key.kid
    if mode is Mode.ALG_NONE:
        return f"{_b64_json({'alg': 'none', 'kid': kid})}.{_b64_json(claims)}."
    if mode is Mode.HS256_WITH_PUBLIC_KEY:
        signing_input = f"{_b64_json({'alg': 'HS256', 'kid': kid})}.{_b64_json(claims)}"
        secret = state.key.as_pem(private=False)
        return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode('ascii'), hashlib.sha256).digest())}"
    if mode is Mode.EMBEDDED_JWK:
        attacker = state.other_key
        header = {"alg": "RS256", "kid": "attacker-key", "jwk": attacker.as_dict(private=False)}
        return jws.serialize_compact(header, json.dumps(claims), attacker, algorithms=["RS256"])
    key = state.other_key if mode is Mode.OTHER_KEY_SAME_KID else state.key
    payload = json.dumps(claims).replace("Infinity", "1e400")
    token = jws.serialize_compact({"alg": "RS256", "kid": kid, "typ": "JWT"}, payload, key, algorithms=["RS256"])
    if mode is Mode.TAMPERED_PAYLOAD:
        protected, _payload, signature = token.split(".")
        token = f"{protected}.{_b64_json({**claims, 'sub': 'admin', 'email': 'ceo@hostile.example'})}.{signature}"
    return token
