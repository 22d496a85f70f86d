from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class LogoutNoticeRow(Base):
    """The back-channel logout outbox: one row per logout token owed to a product."""

    __tablename__ = "logout_notices"
    __table_args__ = (Index("ix_logout_notices_due", "delivered_at", "abandoned_at", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # also the logout token's jti
    session_id: Mapped[str] = mapped_column(String(36))
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(index=True)
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int]
    delivered_at: Mapped[datetime | None]
    abandoned_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(512))
