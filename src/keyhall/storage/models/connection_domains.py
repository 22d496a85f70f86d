from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class ConnectionDomainRow(Base):
    """A domain a connection routes; unique within an organization."""

    __tablename__ = "connection_domains"
    __table_args__ = (
        UniqueConstraint("organization_id", "domain"),
        # Home-realm discovery looks connections up by domain across organizations.
        Index("ix_connection_domains_domain", "domain"),
    )

    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(36), ForeignKey("organizations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
