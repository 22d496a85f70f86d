from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class OrganizationRow(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    admins_may_configure_sso: Mapped[bool] = mapped_column(default=False)
    break_glass_email: Mapped[str | None] = mapped_column(String(320))
    short_id: Mapped[str] = mapped_column(String(21), unique=True)
    default_connection_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
