from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("connection_id", "subject"),
        Index("ix_users_org_email", "organization_id", "email"),
        Index("ix_users_directory_external_id", "directory_id", "external_id"),
        # SCIM: userName is unique per directory and compared case-insensitively (RFC 7643 §4.1.1):
        # user_name_key holds it lower-cased, and the directory's filter queries use this index.
        UniqueConstraint("directory_id", "user_name_key", name="ux_users_directory_user_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(36), ForeignKey("organizations.id", ondelete="CASCADE"))
    connection_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("connections.id", ondelete="CASCADE"))
    subject: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool]
    name: Mapped[str | None] = mapped_column(String(512))
    given_name: Mapped[str | None] = mapped_column(String(512))
    family_name: Mapped[str | None] = mapped_column(String(512))
    username: Mapped[str | None] = mapped_column(String(512))
    picture: Mapped[str | None] = mapped_column(String(512))
    locale: Mapped[str | None] = mapped_column(String(64))
    phone_number: Mapped[str | None] = mapped_column(String(64))
    groups: Mapped[list[str]] = mapped_column(JSONDocument)
    password_hash: Mapped[str | None] = mapped_column(Text)
    disabled: Mapped[bool]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    version: Mapped[int]  # bumped by every write: the ETag of the native API
    # Set for users a SCIM directory provisioned (None for every other user).
    directory_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("directories.id", ondelete="SET NULL"))
    user_name: Mapped[str | None] = mapped_column(String(512))
    user_name_key: Mapped[str | None] = mapped_column(String(512))
    external_id: Mapped[str | None] = mapped_column(String(512))
    scim_attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
