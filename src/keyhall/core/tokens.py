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


@dataclass(frozen=True)
class PublishedKey:
    """A key of the JWKS, its public half only: what publishing and verifying need."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    active: bool  # signs new tokens (the others are retired, published until their tokens expire)


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
class SamlSubject:
    """Who a SAML sign-in's assertion named (saml-core-2.0-os §2.2.3 NameID, §2.7.2 SessionIndex):
    kept per session so an IdP's LogoutRequest (§3.7.1) can find the sessions it ends."""

    connection_id: str
    name_id: str
    name_id_format: str | None = None
    session_index: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"connection_id": self.connection_id, "name_id": self.name_id,
                "name_id_format": self.name_id_format, "session_index": self.session_index}

    @classmethod
    def from_dict(cls, data: Any) -> SamlSubject | None:
        if not isinstance(data, dict) or not data.get("connection_id") or not data.get("name_id"):
            return None
        fmt, index = data.get("name_id_format"), data.get("session_index")
        return cls(connection_id=str(data["connection_id"]), name_id=str(data["name_id"]),
                   name_id_format=fmt if isinstance(fmt, str) else None,
                   session_index=index if isinstance(index, str) else None)


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
