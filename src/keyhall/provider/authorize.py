"""Validating an authorization request (RFC 6749 §4.1.1, §4.1.2.1; OIDC Core §3.1.2.1-2; RFC 7636).

Errors about the client or its redirect URI are shown to the person, never redirected (an attacker
could otherwise use Keyhall as an open redirector); every later error goes back to the registered
redirect URI with ``error=``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from keyhall.core.applications import Application

_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256 digest, no padding
_MAX_PARAM = 2048  # characters of one parameter's value
#: An unauthenticated request may not make Keyhall store more than this: the parameters become the
#: sign-in transaction (kept until it expires), so their number and total size are capped too.
MAX_PARAMS = 32
MAX_TOTAL_CHARS = 8192  # names and values together


@dataclass(frozen=True)
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    prompt: str | None
    login_hint: str | None
    organization: str | None
    connection: str | None
    domain: str | None
    response_mode: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # Every field is a string or None: a shallow dict is the whole copy (``dataclasses.asdict``
        # deep-copies each value, some 14 us against 1 here, on every sign-in's first step).
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorizeRequest:
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**values)


class AuthorizeError(Exception):
    """``redirect_uri`` is None when the error must be shown rather than redirected."""

    def __init__(self, error: str, description: str, *, redirect_uri: str | None = None, state: str | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


def add_query(uri: str, params: Mapping[str, str | None]) -> str:
    """Append parameters to a registered redirect URI, keeping its own query (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def error_redirect(error: AuthorizeError, issuer: str) -> str:
    assert error.redirect_uri is not None
    return add_query(error.redirect_uri, {"error": error.error, "error_description": error.description,
                                          "state": error.state, "iss": issuer})


def check_request_size(params: Mapping[str, str]) -> None:
    """The caps on an authorization request's parameters (one value, how many, all together);
    refused before anything is looked up or stored, and shown rather than redirected."""
    if len(params) > MAX_PARAMS:
        raise AuthorizeError("invalid_request", f"too many parameters (at most {MAX_PARAMS})")
    for name, value in params.items():
        if len(value) > _MAX_PARAM:
            raise AuthorizeError("invalid_request", f"{name[:64]} is too long (at most {_MAX_PARAM} characters)")
    if sum(len(name) + len(value) for name, value in params.items()) > MAX_TOTAL_CHARS:
        raise AuthorizeError("invalid_request", f"the request is too large (at most {MAX_TOTAL_CHARS} characters)")


def parse_authorize(params: Mapping[str, str], app: Application | None) -> AuthorizeRequest:
    check_request_size(params)
    client_id = params.get("client_id")
    if not client_id or app is None:
        raise AuthorizeError("invalid_client", "unknown client_id")
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        raise AuthorizeError("invalid_request", "redirect_uri is required")
    if redirect_uri not in app.redirect_uris:  # exact match, no pattern, no prefix
        raise AuthorizeError("invalid_request", "redirect_uri is not registered for this client")
    state = params.get("state")

    def fail(error: str, description: str) -> AuthorizeError:
        return AuthorizeError(error, description, redirect_uri=redirect_uri, state=state)

    if params.get("request") or params.get("request_uri"):
        raise fail("request_not_supported", "request objects are not supported")
    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    response_mode = params.get("response_mode")
    if response_mode not in (None, "query"):
        raise fail("invalid_request", "only response_mode=query is supported")
    scopes = (params.get("scope") or "").split()
    if "openid" not in scopes:
        raise fail("invalid_scope", "scope must include openid")
    unknown = [s for s in scopes if s not in app.allowed_scopes]
    if unknown:
        raise fail("invalid_scope", f"scope not allowed for this client: {' '.join(unknown)}")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        if app.public:
            raise fail("invalid_request", "code_challenge (PKCE, S256) is required for public clients")
        if method is not None:
            raise fail("invalid_request", "code_challenge_method without code_challenge")
    else:
        if method != "S256":
            raise fail("invalid_request", "code_challenge_method must be S256")
        if not _CHALLENGE.match(challenge):
            raise fail("invalid_request", "code_challenge is not a base64url SHA-256 value")
    prompt = params.get("prompt")
    if prompt is not None and any(p not in ("login", "none", "consent", "select_account") for p in prompt.split()):
        raise fail("invalid_request", "unsupported prompt value")
    if prompt is not None and "none" in prompt.split():
        raise fail("login_required", "prompt=none: the person must sign in")
    return AuthorizeRequest(
        client_id=client_id, redirect_uri=redirect_uri, scope=" ".join(dict.fromkeys(scopes)), state=state,
        nonce=params.get("nonce"), code_challenge=challenge, code_challenge_method=method, prompt=prompt,
        login_hint=params.get("login_hint"), organization=params.get("organization"),
        connection=params.get("connection"), domain=params.get("domain"), response_mode=response_mode,
    )
