from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class SignInTraceRow(Base):
    """One sign-in's steps and checks (``core.sign_in_traces``); kept ``KEYHALL_TRACE_RETENTION_DAYS``.
    No foreign keys: a trace outlives neither its retention nor needs its connection to be read."""

    __tablename__ = "sign_in_traces"
    __table_args__ = (Index("ix_sign_in_traces_org_created", "organization_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(36))
    connection_id: Mapped[str] = mapped_column(String(36))
    protocol: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    profile: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    failure: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    started_by: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(36))
    browser_binding: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(index=True)  # KEYHALL_TRACE_RETENTION_DAYS purges by age
