from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class CertificateWatchRow(Base):
    """Per SAML connection: when its metadata and certificates are next looked at (claimed by a
    conditional UPDATE of ``due_at``), the metadata's validators, what was already noticed, and
    the state of a rollover of its SP key."""

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
    # SP key rollover: the next SP certificate (published, not yet active) and when it becomes active;
    # until when the previous key still decrypts; the next and previous private keys, sealed.
    sp_next_certificate: Mapped[str | None] = mapped_column(Text)
    sp_next_activates_at: Mapped[datetime | None]
    sp_previous_until: Mapped[datetime | None]
    sealed_sp_keys: Mapped[str | None] = mapped_column(Text)
