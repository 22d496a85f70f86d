from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class ConnectionRow(Base):
    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    protocol: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    contacts: Mapped[list[str]] = mapped_column(JSONDocument)
    branding: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    is_verified: Mapped[bool]
    verified_at: Mapped[datetime | None]
    disable_email_password: Mapped[bool]
    sync_profile: Mapped[bool]
    require_verified_email: Mapped[bool] = mapped_column(default=False, server_default=false())
    user_provisioning: Mapped[str] = mapped_column(String(16))
    group_provisioning: Mapped[str] = mapped_column(String(16))
    attribute_mappings: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    group_mappings: Mapped[list[Any]] = mapped_column(JSONDocument)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    sealed_secrets: Mapped[str | None] = mapped_column(Text)
    discovered: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    text_record: Mapped[str | None] = mapped_column(String(40))
    sso_configuration_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    version: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
