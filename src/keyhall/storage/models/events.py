from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument

#: A 64-bit sequence on PostgreSQL; SQLite numbers rows only through an INTEGER primary key.
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")


class EventRow(Base):
    """The event log (``keyhall.core.events``): append-only, numbered in commit order, purged by
    age (``KEYHALL_EVENT_RETENTION_DAYS``)."""

    __tablename__ = "events"

    sequence: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    organization_id: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(index=True)
