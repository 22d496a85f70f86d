"""The SAML replay cache."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.storage.models import (
    SamlReplayRow,
)


class SqlReplays:
    """The SAML replay cache: an assertion id is accepted once per connection."""

    def __init__(self, session: Session):
        self.session = session

    def remember(self, connection_id: str, assertion_id: str, expires_at: datetime, now: datetime) -> bool:
        """True the first time; False when the id was seen and has not expired."""
        self.session.execute(delete(SamlReplayRow).where(SamlReplayRow.expires_at < now))
        try:
            with self.session.begin_nested():
                self.session.add(SamlReplayRow(connection_id=connection_id, assertion_id=assertion_id[:256],
                                               expires_at=expires_at))
        except IntegrityError:
            return False
        return True

