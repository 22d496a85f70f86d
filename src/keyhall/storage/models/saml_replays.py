from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base


class SamlReplayRow(Base):
    """Assertion ids already used, kept until the assertion could no longer be accepted anyway."""

    __tablename__ = "saml_replays"

    connection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    assertion_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
