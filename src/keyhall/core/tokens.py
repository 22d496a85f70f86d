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
    """One sign-in's lineage at one product: every refresh token rotated from one authorization code,
    and every access token minted with them (they carry its id as ``sid``). Revoking the family ends
    them all; ``created_at`` bounds its absolute lifetime."""

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
