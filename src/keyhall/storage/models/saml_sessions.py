from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class SamlSessionRow(Base):
    """Per session (token family) begun by a SAML sign-in: the assertion's NameID and SessionIndex,
    which an IdP's LogoutRequest names (saml-core-2.0-os §3.7.1)."""

    __tablename__ = "saml_sessions"
    __table_args__ = (Index("ix_saml_sessions_subject", "connection_id", "name_id"),)

    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("token_families.id", ondelete="CASCADE"),
                                            primary_key=True)
    connection_id: Mapped[str] = mapped_column(String(36))
    name_id: Mapped[str] = mapped_column(String(512))
    name_id_format: Mapped[str | None] = mapped_column(String(256))
    session_index: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime]
