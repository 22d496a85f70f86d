"""What the OpenID provider stores: signing keys, authorization codes, refresh-token families and
tokens. Plain records; ``keyhall.provider`` holds the behaviour, ``core.ports`` the repositories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class SigningKey:
    kid: str
    alg: str
    private_pem: str
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None
    published_until: datetime | None = None  # stays in the JWKS until tokens it signed expire


@dataclass
class AuthorizationCode:
    code_hash: str
    client_id: str
    user_id: str
    grant: dict[str, Any]  # scope, nonce, redirect_uri, code_challenge, connection_id, auth_time, amr...
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass
class TokenFamily:
    """One sign-in's lineage at one product — its Keyhall session (``core.sessions``): every refresh
    token rotated from one authorization code, and every ID and access token minted with them (they
    carry its id as ``sid``). Revoking the family ends them all; ``created_at`` bounds its absolute
    lifetime."""

    id: str
    client_id: str
    user_id: str
    connection_id: str | None  # None: a local password account
    amr: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass
class RefreshToken:
    token_hash: str
    family_id: str
    client_id: str
    user_id: str
    grant: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class LiveSession:
    id: str  # the sid
    client_id: str
    user_id: str


@dataclass
class LogoutNotice:
    """A back-channel logout owed to a product (Back-Channel Logout 1.0 §2.5). The logout token is
    signed when it is sent, so a retry hours later still carries a fresh ``iat``/``exp``; its ``jti``
    is the notice id, the same on every attempt."""

    id: str
    session_id: str
    client_id: str
    user_id: str
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    delivered_at: datetime | None = None
    abandoned_at: datetime | None = None
    last_error: str | None = None
