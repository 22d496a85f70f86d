"""Applications: the products that sign their users in through Keyhall (OIDC clients)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from keyhall.errors import InvalidInput
from keyhall.security.api_keys import hash_secret

SigningAlg = Literal["RS256", "ES256"]
DEFAULT_SCOPES = ("openid", "profile", "email", "groups", "offline_access")


@dataclass
class Application:
    id: str  # the client_id
    name: str
    public: bool
    redirect_uris: list[str]
    allowed_scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))
    id_token_alg: SigningAlg = "RS256"
    secret_hash: str | None = None
    #: RP-Initiated Logout 1.0 §3: where a logout may send the person back (exact match).
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    #: Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed when a session ends.
    backchannel_logout_uri: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.min)
    updated_at: datetime = field(default_factory=lambda: datetime.min)


def check_redirect_uri(uri: str, field_name: str = "redirect_uris") -> str:
    """Absolute, no fragment (RFC 6749 §3.1.2); https, or http only for loopback (RFC 8252 §7.3).
    ``field_name`` names the field in errors (post-logout redirect URIs follow the same rules)."""
    f = field_name
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        raise InvalidInput(f"{f}: must not contain spaces or control characters", field=f)
    parts = urlsplit(uri)
    if len(uri) > 2048 or not parts.scheme or (not parts.netloc and parts.scheme in ("http", "https")):
        raise InvalidInput(f"{f}: each must be an absolute URI", field=f)
    if parts.fragment:
        raise InvalidInput(f"{f}: must not contain a fragment", field=f)
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise InvalidInput(f"{f}: http is allowed only for localhost; use https", field=f)
    if parts.scheme in ("javascript", "data", "file", "vbscript"):
        raise InvalidInput(f"{f}: the {parts.scheme} scheme is not allowed", field=f)
    return uri


MAX_LOGOUT_URIS = 20


def check_post_logout_redirect_uris(uris: list[str]) -> list[str]:
    """RP-Initiated Logout 1.0 §3.1: registered like redirect URIs, matched exactly."""
    if len(uris) > MAX_LOGOUT_URIS:
        raise InvalidInput(f"post_logout_redirect_uris: at most {MAX_LOGOUT_URIS}", field="post_logout_redirect_uris")
    return [check_redirect_uri(u, "post_logout_redirect_uris") for u in dict.fromkeys(uris)]


def check_backchannel_logout_uri(uri: str | None) -> str | None:
    """Back-Channel Logout 1.0 §2.2: an absolute http(s) URI without a fragment. Where it may point
    (no private addresses unless insecure IdP URLs are allowed) is checked when Keyhall calls it."""
    if uri is None or uri == "":
        return None
    check_redirect_uri(uri, "backchannel_logout_uri")
    if urlsplit(uri).scheme not in ("http", "https"):
        raise InvalidInput("backchannel_logout_uri: must be an http(s) URL", field="backchannel_logout_uri")
    return uri


def new_application(
    name: str, redirect_uris: list[str], *, public: bool, now: datetime, id_token_alg: SigningAlg = "RS256",  # noqa: S107
    allowed_scopes: list[str] | None = None, post_logout_redirect_uris: list[str] | None = None,
    backchannel_logout_uri: str | None = None,
) -> tuple[Application, str | None]:
    """A new application and, for a confidential one, its client secret (shown once)."""
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise InvalidInput("name: must be 1-128 characters", field="name")
    if not redirect_uris:
        raise InvalidInput("redirect_uris: at least one is required", field="redirect_uris")
    uris = [check_redirect_uri(u) for u in dict.fromkeys(redirect_uris)]
    scopes = list(dict.fromkeys(allowed_scopes or DEFAULT_SCOPES))
    if "openid" not in scopes:
        raise InvalidInput("allowed_scopes: must include openid", field="allowed_scopes")
    logout_uris = check_post_logout_redirect_uris(post_logout_redirect_uris or [])
    backchannel = check_backchannel_logout_uri(backchannel_logout_uri)
    secret = None if public else secrets.token_urlsafe(32)
    app = Application(
        id=f"app_{uuid.uuid4().hex}", name=name, public=public, redirect_uris=uris, allowed_scopes=scopes,
        id_token_alg=id_token_alg, secret_hash=hash_secret(secret) if secret else None,
        post_logout_redirect_uris=logout_uris, backchannel_logout_uri=backchannel, created_at=now, updated_at=now,
    )
    return app, secret
