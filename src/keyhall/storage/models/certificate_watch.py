from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class CertificateWatchRow(Base):
    """Per SAML connection: when its metadata and certificates are next looked at (claimed by a
    conditional UPDATE of ``due_at``), the metadata's validators, and what was already noticed."""

    __tablename__ = "connection_certificate_watch"

    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    due_at: Mapped[datetime] = mapped_column(index=True)
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(64))
    missing_since: Mapped[dict[str, Any]] = mapped_column(JSONDocument)  # fingerprint → ISO time
    fired: Mapped[dict[str, Any]] = mapped_column(JSONDocument)  # fingerprint → notices already sent
    last_error: Mapped[str | None] = mapped_column(Text)
