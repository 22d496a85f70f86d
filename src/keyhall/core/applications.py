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
    created_at: datetime = field(default_factory=lambda: datetime.min)
    updated_at: datetime = field(default_factory=lambda: datetime.min)


def check_redirect_uri(uri: str) -> str:
    """Absolute, no fragment (RFC 6749 §3.1.2); https, or http only for loopback (RFC 8252 §7.3)."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        raise InvalidInput("redirect_uris: must not contain spaces or control characters", field="redirect_uris")
    parts = urlsplit(uri)
    if len(uri) > 2048 or not parts.scheme or (not parts.netloc and parts.scheme in ("http", "https")):
        raise InvalidInput("redirect_uris: each must be an absolute URI", field="redirect_uris")
    if parts.fragment:
        raise InvalidInput("redirect_uris: must not contain a fragment", field="redirect_uris")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise InvalidInput("redirect_uris: http is allowed only for localhost; use https", field="redirect_uris")
    if parts.scheme in ("javascript", "data", "file", "vbscript"):
        raise InvalidInput(f"redirect_uris: the {parts.scheme} scheme is not allowed", field="redirect_uris")
    return uri


def new_application(
    name: str, redirect_uris: list[str], *, public: bool, now: datetime, id_token_alg: SigningAlg = "RS256",  # noqa: S107
    allowed_scopes: list[str] | None = None,
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
    secret = None if public else secrets.token_urlsafe(32)
    app = Application(
        id=f"app_{uuid.uuid4().hex}", name=name, public=public, redirect_uris=uris, allowed_scopes=scopes,
        id_token_alg=id_token_alg, secret_hash=hash_secret(secret) if secret else None, created_at=now,
        updated_at=now,
    )
    return app, secret
