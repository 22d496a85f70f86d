from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class DirectoryGroupRow(Base):
    """A SCIM Group of a directory; its members are rows of ``directory_memberships``."""

    __tablename__ = "directory_groups"
    __table_args__ = (
        Index("ix_directory_groups_directory_external", "directory_id", "external_id"),
        Index("ix_directory_groups_directory_display", "directory_id", "display_name_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    directory_id: Mapped[str] = mapped_column(String(36), ForeignKey("directories.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(String(36), ForeignKey("organizations.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(512))
    display_name_key: Mapped[str] = mapped_column(String(512))  # lower-cased, for case-insensitive filters
    external_id: Mapped[str | None] = mapped_column(String(512))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int]
