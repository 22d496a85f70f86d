"""The SAML replay cache."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from keyhall.storage.hot_queries import remember_replay, run
from keyhall.storage.repos._query import dialect_name


class SqlReplays:
    """The SAML replay cache: an assertion id is accepted once per connection."""

    def __init__(self, session: Session):
        self.session = session

    def remember(self, connection_id: str, assertion_id: str, expires_at: datetime, now: datetime) -> bool:
        """True the first time; False when the id was seen and has not expired.

        One statement: the row is inserted, or an expired one with the same id taken over, and
        either returns it; an unexpired one is left alone and nothing comes back. Expired rows of
        other ids are the purge job's (``keyhall.storage.purge``)."""
        statement = remember_replay(dialect_name(self.session))
        remembered = run(self.session, statement, connection_id=connection_id, assertion_id=assertion_id[:256],
                         expires_at=expires_at, b_now=now)
        return remembered.first() is not None
