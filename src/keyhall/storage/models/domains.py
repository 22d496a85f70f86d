from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class DomainRow(Base):
    """An email domain claimed by an organization, with its DNS verification state."""

    __tablename__ = "domains"
    __table_args__ = (
        UniqueConstraint("organization_id", "name"),
        # A verified domain belongs to one organization: the database refuses a second proof.
        Index("uq_domains_verified_name", "name", unique=True, sqlite_where=text("status = 'verified'"),
              postgresql_where=text("status = 'verified'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(253), index=True)
    verification_token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    last_checked_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(512))
    verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
