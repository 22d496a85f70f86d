from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class AuthorizationCodeRow(Base):
    """One-time authorization codes (stored as a SHA-256 of the code)."""

    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(36))
    grant: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class RefreshTokenRow(Base):
    """Refresh tokens (SHA-256 stored), rotated on use; a family shares one lineage."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    grant: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)  # the purge scans expired and revoked tokens
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)
