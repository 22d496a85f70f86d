"""What the provider stores: signing keys, authorization codes, refresh-token families and tokens,
and the access tokens revoked before they expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from keyhall.core.applications import ApplicationStore
from keyhall.core.ports import UnitOfWork
from keyhall.core.transactions import TransactionRepository
from keyhall.core.users import User


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


class SigningKeyRepository(Protocol):
    def active(self, alg: str) -> SigningKey | None: ...
    def published(self, now: datetime) -> list[SigningKey]: ...
    def get(self, kid: str) -> SigningKey | None: ...
    def add(self, key: SigningKey) -> None: ...
    def add_active(self, key: SigningKey) -> bool: ...
    def retire(self, kid: str, now: datetime, published_until: datetime) -> None: ...


class GrantRepository(Protocol):
    def add_code(self, code: AuthorizationCode) -> None: ...
    def use_code(self, code_hash: str, now: datetime) -> tuple[AuthorizationCode | None, bool]:
        """The code and True if this call used it; (code, False) when it was used before."""
        ...
    def note_code_family(self, code_hash: str, family_id: str) -> None: ...
    def add_refresh(self, token: RefreshToken) -> None: ...
    def use_refresh(self, token_hash: str, now: datetime) -> tuple[RefreshToken | None, bool]: ...
    def find_refresh(self, token_hash: str) -> RefreshToken | None: ...
    def add_family(self, family: TokenFamily) -> None: ...
    def family(self, family_id: str) -> TokenFamily | None: ...
    def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke the family and every refresh token in it; the number of tokens newly revoked."""
        ...
    def revoke_user(self, user_id: str, now: datetime) -> int:
        """Revoke every family (and refresh token) of a user; the number of families newly revoked."""
        ...
    def forget_user(self, user_id: str) -> None:
        """Delete every code, refresh token and family of a user."""
        ...
    def revoke_access_token(self, jti: str, family_id: str | None, expires_at: datetime) -> None: ...
    def access_token_revoked(self, jti: str) -> bool: ...


class UserLookup(Protocol):
    def get(self, user_id: str) -> User | None: ...


ApplicationRepository = ApplicationStore


class ReplayCache(Protocol):
    def remember(self, connection_id: str, assertion_id: str, expires_at: datetime, now: datetime) -> bool: ...


class ProviderUnitOfWork(UnitOfWork, Protocol):
    @property
    def replays(self) -> ReplayCache: ...
    @property
    def signing_keys(self) -> SigningKeyRepository: ...
    @property
    def grants(self) -> GrantRepository: ...
    @property
    def transactions(self) -> TransactionRepository: ...
