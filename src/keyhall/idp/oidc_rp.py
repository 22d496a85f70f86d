"""The relying party's back channel to an organization's OpenID provider.

Network glue: every request goes through ``keyhall.security.outbound_async`` (SSRF guard, size cap,
timeouts), from the event loop: a sign-in waiting for its IdP holds no thread. The protocol checks
themselves live in ``keyhall.protocols.oidc``.

- ``choose_token_auth_method``: how Keyhall authenticates at the token endpoint (OpenID Connect
  Core 1.0 §9, Discovery 1.0 §3).
- ``exchange_code``: the token request of the authorization code flow (RFC 6749 §4.1.3, §5;
  OIDC Core §3.1.3.1 to §3.1.3.3) carrying the PKCE verifier (RFC 7636 §4.5).
- ``JwksCache``: the providers' JWK Sets, cached per process and re-read when a provider signs
  with a key not seen yet (OIDC Core §10.1.1, key rotation).
- ``fetch_userinfo``: the UserInfo request (OIDC Core §5.3).

Every failure is an ``IdPLoginError`` whose ``reason`` is ``token_error`` (the provider
answered an OAuth error), ``idp_unreachable``, ``bad_token_response``, ``jwks_invalid`` or
``userinfo_failed``. Messages never carry codes, verifiers, secrets or tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote_plus

from keyhall.errors import DiscoveryError, IdPLoginError, OutboundFetchError, UnsafeURL
from keyhall.metrics import idp_call
from keyhall.protocols.oidc.discovery import parse_jwks
from keyhall.security.outbound import OutboundPolicy
from keyhall.security.outbound_async import fetch, post_form

#: Token endpoint client authentication methods Keyhall implements (OIDC Core §9).
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
_JWKS_ACCEPT = "application/jwk-set+json, application/json;q=0.9"
_SHOWN_ERROR_CHARS = 300


def choose_token_auth_method(supported: Sequence[str] | None, configured: str | None, has_secret: bool) -> str:
    """The client authentication method for the token endpoint (OIDC Core §9).

    ``supported`` is the provider's ``token_endpoint_auth_methods_supported`` (None when the
    discovery document omits it: then ``client_secret_basic`` is the default, Discovery §3).
    A ``configured`` method wins when Keyhall implements it, the provider supports it, and a
    secret exists for the secret-based ones. Otherwise: ``none`` without a secret, else
    ``client_secret_basic`` when supported, else ``client_secret_post``.
    """
    if (
        configured in TOKEN_AUTH_METHODS
        and (supported is None or configured in supported)
        and (has_secret or configured == "none")
    ):
        return str(configured)
    if not has_secret:
        return "none"
    if supported is None or "client_secret_basic" in supported:
        return "client_secret_basic"
    return "client_secret_post"


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3). Tokens stay out of ``repr``."""

    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    refresh_token: str | None = field(repr=False)
    scope: str | None
    raw: Mapping[str, Any] = field(repr=False)


async def exchange_code(
    *,
    token_endpoint: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    client_id: str,
    client_secret: str | None,
    auth_method: str,
    policy: OutboundPolicy,
) -> TokenResponse:
    """Trade an authorization code for tokens (RFC 6749 §4.1.3) and check the answer (§5.1, §5.2).

    ``client_secret_basic`` sends the form-urlencoded client id and secret in HTTP Basic
    authentication (RFC 6749 §2.3.1); ``client_secret_post`` puts them in the form; ``none``
    sends the client id only. The answer must be a JSON object with an ``access_token``, a
    ``Bearer`` ``token_type`` and an ``id_token`` (OIDC Core §3.1.3.3). Raises IdPLoginError.
    """
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    headers: dict[str, str] = {}
    if auth_method not in TOKEN_AUTH_METHODS:
        raise ValueError(f"unsupported token endpoint auth method {auth_method!r}")
    if auth_method != "none" and not client_secret:
        raise ValueError(f"{auth_method} needs a client secret")
    if auth_method == "client_secret_basic":
        pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret or '', safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    else:
        form["client_id"] = client_id
        if auth_method == "client_secret_post":
            form["client_secret"] = client_secret or ""
    with idp_call("oidc_token"):
        try:
            answer = await post_form(
                token_endpoint, form, policy, headers=headers, field="oidc.token_endpoint", raise_for_status=False
            )
        except (UnsafeURL, OutboundFetchError) as exc:
            raise _unreachable("token endpoint could not be used", "token", exc) from exc
        document = _json_object(answer.body)
        if not 200 <= answer.status < 300:
            raise _token_error(answer.status, document)
        return _token_response(document, answer.status)


def _token_error(status: int, document: dict[str, Any] | None) -> IdPLoginError:
    """The error a non-2xx token response stands for (RFC 6749 §5.2)."""
    error = document.get("error") if document is not None else None
    if not isinstance(error, str) or not error:
        return IdPLoginError(
            f"the identity provider's token endpoint answered HTTP {status} without an OAuth error document",
            reason="bad_token_response",
            details={"status": status},
        )
    assert document is not None
    description = document.get("error_description")
    description = _clip(description) if isinstance(description, str) and description else None
    said = f": {description}" if description else ""
    return IdPLoginError(
        f"the identity provider refused the token request with {_clip(error, 80)!r}{said}",
        reason="token_error",
        details={"status": status, "error": _clip(error, 80), "error_description": description},
    )


def _token_response(document: dict[str, Any] | None, status: int) -> TokenResponse:
    def bad(problem: str) -> IdPLoginError:
        return IdPLoginError(
            f"the identity provider's token response {problem}", reason="bad_token_response", details={"status": status}
        )

    if document is None:
        raise bad("is not a JSON object")
    if isinstance(document.get("error"), str):
        raise _token_error(status, document)
    access_token, token_type, id_token = (document.get(name) for name in ("access_token", "token_type", "id_token"))
    if not isinstance(access_token, str) or not access_token:
        raise bad('has no "access_token" (RFC 6749 §5.1)')
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = repr(_clip(token_type, 40)) if isinstance(token_type, str) else "none"
        raise bad(f'has token_type {shown}, not "Bearer" (OpenID Connect Core 1.0 §3.1.3.3)')
    if not isinstance(id_token, str) or not id_token:
        raise bad('has no "id_token"; was the "openid" scope requested? (OpenID Connect Core 1.0 §3.1.3.3)')
    refresh_token, scope = document.get("refresh_token"), document.get("scope")
    return TokenResponse(
        id_token=id_token,
        access_token=access_token,
        token_type=token_type,
        expires_in=_seconds(document.get("expires_in")),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        scope=scope if isinstance(scope, str) else None,
        raw=MappingProxyType(document),
    )


# --- JWK Sets --------------------------------------------------------------------------------------


@dataclass
class _CachedJwks:
    document: dict[str, Any]
    kids: frozenset[str]
    fetched_at: float  # for the TTL
    attempted_at: float  # last fetch tried, for the refetch throttle


class JwksCache:
    """Providers' JWK Sets (RFC 7517 §5), cached per process and safe to share between threads.

    A set is kept ``ttl_seconds``. When a token names a ``kid`` that the cached set lacks, the
    set is read again at once (OIDC Core §10.1.1: providers rotate keys by publishing new ones),
    but at most once every ``refetch_after_seconds`` per URI, so that tokens with made-up kids
    cannot hammer the provider; if that refetch fails, the cached set is still answered. One
    sign-in of an event loop fetches a URI at a time, the others wait for its answer. ``clock``
    (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = 300.0,
        refetch_after_seconds: float = 30.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._refetch_after = refetch_after_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _CachedJwks] = {}
        # Per event loop and URI: the fetch in progress, which later sign-ins wait for.
        self._uri_locks: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = {}

    async def get(self, jwks_uri: str, policy: OutboundPolicy, *, kid: str | None = None) -> dict[str, Any]:
        """The JWKS document at ``jwks_uri`` (a copy); raises IdPLoginError (``idp_unreachable``, ``jwks_invalid``)."""
        with self._lock:
            entry = self._entries.get(jwks_uri)
            uri_lock = self._uri_locks.setdefault((asyncio.get_running_loop(), jwks_uri), asyncio.Lock())
        if entry is not None and self._fetch_reason(entry, kid) is None:
            return copy.deepcopy(entry.document)
        async with uri_lock:
            with self._lock:
                entry = self._entries.get(jwks_uri)
            reason = "absent" if entry is None else self._fetch_reason(entry, kid)
            if entry is not None and reason is None:  # another thread has just read it
                return copy.deepcopy(entry.document)
            if entry is not None and reason == "unknown_kid":
                # Within the TTL a failed refetch leaves the cached set in use: the kid stays unknown.
                entry.attempted_at = self._clock()
                with contextlib.suppress(IdPLoginError):
                    entry = self._store(jwks_uri, await _read_jwks(jwks_uri, policy))
            else:
                entry = self._store(jwks_uri, await _read_jwks(jwks_uri, policy))
            return copy.deepcopy(entry.document)

    def invalidate(self, jwks_uri: str | None = None) -> None:
        """Forget one URI's set (e.g. its connection changed), or every set."""
        with self._lock:
            if jwks_uri is None:
                self._entries.clear()
            else:
                self._entries.pop(jwks_uri, None)

    def _fetch_reason(self, entry: _CachedJwks, kid: str | None) -> str | None:
        now = self._clock()
        if now - entry.fetched_at >= self._ttl:
            return "expired"
        if kid is not None and kid not in entry.kids and now - entry.attempted_at >= self._refetch_after:
            return "unknown_kid"
        return None

    def _store(self, jwks_uri: str, document: dict[str, Any]) -> _CachedJwks:
        now = self._clock()
        kids = frozenset(k["kid"] for k in document["keys"] if isinstance(k, dict) and isinstance(k.get("kid"), str))
        entry = _CachedJwks(document, kids, fetched_at=now, attempted_at=now)
        with self._lock:
            self._entries[jwks_uri] = entry
            while len(self._entries) > self._max_entries:
                oldest = min(self._entries, key=lambda uri: self._entries[uri].fetched_at)
                del self._entries[oldest]
                for held in [key for key in self._uri_locks if key[1] == oldest]:
                    self._uri_locks.pop(held, None)
        return entry


def _unreachable(what: str, endpoint: str, exc: UnsafeURL | OutboundFetchError) -> IdPLoginError:
    """``idp_unreachable``: the IdP's ``endpoint`` refused by the SSRF guard or not answering."""
    return IdPLoginError(f"the identity provider's {what}: {exc.message}", reason="idp_unreachable",
                         details={"endpoint": endpoint})


async def _read_jwks(jwks_uri: str, policy: OutboundPolicy) -> dict[str, Any]:
    with idp_call("oidc_jwks"):
        try:
            answer = await fetch(jwks_uri, policy, accept=_JWKS_ACCEPT, field="oidc.jwks_uri")
        except (UnsafeURL, OutboundFetchError) as exc:
            raise _unreachable("keys could not be fetched", "jwks", exc) from exc
        return _jwks_document(answer.body)


def _jwks_document(body: bytes) -> dict[str, Any]:
    try:
        parse_jwks(body, field="oidc.jwks_uri")
    except DiscoveryError as exc:
        raise IdPLoginError(
            f"the identity provider's JWKS is unusable: {exc.message}", reason="jwks_invalid", details=exc.details
        ) from exc
    document = _json_object(body)
    assert document is not None  # parse_jwks accepted it
    return document


# --- UserInfo --------------------------------------------------------------------------------------


async def fetch_userinfo(
    *, userinfo_endpoint: str, access_token: str, policy: OutboundPolicy, expected_sub: str | None = None
) -> dict[str, Any]:
    """The UserInfo claims for an access token (OIDC Core §5.3.1, §5.3.2).

    The token goes as a Bearer credential (RFC 6750 §2.1). The answer must be a JSON object
    with a ``sub``; signed or encrypted (``application/jwt``) answers are refused. With
    ``expected_sub`` (the ID token's), a different ``sub`` is refused (§5.3.4). Raises
    IdPLoginError with reason ``userinfo_failed``.
    """
    headers = {"Authorization": f"Bearer {access_token}"}
    with idp_call("oidc_userinfo"):
        try:
            answer = await fetch(
                userinfo_endpoint, policy, accept="application/json", field="oidc.userinfo_endpoint", headers=headers
            )
        except (UnsafeURL, OutboundFetchError) as exc:
            status = exc.details.get("status")
            raise IdPLoginError(
                f"the identity provider's UserInfo request failed: {exc.message}",
                reason="userinfo_failed",
                details={"status": status} if status is not None else None,
            ) from exc
        return _userinfo_claims(answer.content_type, answer.body, expected_sub)


def _userinfo_claims(content_type: str, body: bytes, expected_sub: str | None) -> dict[str, Any]:
    def failed(problem: str) -> IdPLoginError:
        return IdPLoginError(f"the identity provider's UserInfo response {problem}", reason="userinfo_failed")

    if content_type.split(";", 1)[0].strip().lower() == "application/jwt":
        raise failed("is a signed or encrypted JWT, which Keyhall does not accept (JSON only)")
    claims = _json_object(body)
    if claims is None:
        raise failed("is not a JSON object (OpenID Connect Core 1.0 §5.3.2)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise failed('has no "sub" (OpenID Connect Core 1.0 §5.3.2)')
    if expected_sub is not None and sub != expected_sub:
        raise failed("is about another user than the ID token (OpenID Connect Core 1.0 §5.3.4)")
    return claims


# --- helpers ---------------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _seconds(value: object) -> int | None:
    """``expires_in`` as whole seconds; some providers send it as a string. Anything else: unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _clip(text: str, limit: int = _SHOWN_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
