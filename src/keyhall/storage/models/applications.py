from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from keyhall.storage.models.base import Base, JSONDocument


class ApplicationRow(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    public: Mapped[bool]
    redirect_uris: Mapped[list[str]] = mapped_column(JSONDocument)
    allowed_scopes: Mapped[list[str]] = mapped_column(JSONDocument)
    id_token_alg: Mapped[str] = mapped_column(String(8))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSONDocument)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Bumped by every update: the caches serve a cached registration only at the current version.
    version: Mapped[int] = mapped_column(default=1, server_default="1")
