from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class DirectoryMembershipRow(Base):
    """A user's membership of a directory group (both of the same directory)."""

    __tablename__ = "directory_memberships"

    group_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("directory_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    display: Mapped[str | None] = mapped_column(String(512))  # as the directory sent it, if it did
