from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class SigningKeyRow(Base):
    """Keys that sign ID and access tokens; the private half is sealed with the secret keys."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        # One active key per algorithm, even when several instances need their first key at once.
        Index("uq_signing_keys_active_alg", "alg", unique=True, sqlite_where=text("retired_at IS NULL"),
              postgresql_where=text("retired_at IS NULL")),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8), index=True)
    sealed_private_key: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    published_until: Mapped[datetime | None]
