"""The setup portal's links and the sessions they opened (``keyhall.core.portal``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class PortalLinkRow(Base):
    """A single-use link into the portal; only the token's SHA-256 is kept."""

    __tablename__ = "portal_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    intent: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    return_url: Mapped[str | None] = mapped_column(String(2048))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class PortalSessionRow(Base):
    """A browser's session in the portal, opened by one link; the cookie's SHA-256 is kept."""

    __tablename__ = "portal_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    link_id: Mapped[str] = mapped_column(String(36), ForeignKey("portal_links.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    intent: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    return_url: Mapped[str | None] = mapped_column(String(2048))
    draft_connection_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
