"""A database handle: the engine, units of work, migrations and health."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from keyhall.security.secrets import SecretBox
from keyhall.storage import migrate
from keyhall.storage.engine import build_engine, session_factory
from keyhall.storage.purge import purge_expired
from keyhall.storage.repositories import SqlUnitOfWork


class Database:
    def __init__(self, url: str, box: SecretBox):
        self.url = url
        self.engine = build_engine(url)
        self.sessions = session_factory(self.engine)
        self.box = box

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def unit_of_work(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.sessions(), self.box)

    def migrate(self) -> None:
        migrate.upgrade(self.engine)

    def purge_expired(self, now: datetime, *, audit_retention_days: int = 0,
                      stop: Callable[[], bool] | None = None) -> dict[str, int]:
        """Delete expired sign-in state (and audit events past retention); counts per kind."""
        return purge_expired(self.engine, now, audit_retention_days=audit_retention_days, stop=stop)

    def is_up_to_date(self) -> bool:
        return migrate.is_up_to_date(self.engine)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except DBAPIError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()
