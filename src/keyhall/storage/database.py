"""A database handle: the engine, units of work, migrations and health."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, TypeGuard, cast

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from keyhall.security.secrets import SecretBox
from keyhall.storage.cache import StorageCaches
from keyhall.storage.engine import DEFAULT_TIMEOUT_SECONDS, build_engine, reading_engine, session_factory
from keyhall.storage.purge import purge_expired
from keyhall.storage.unit_of_work import SqlUnitOfWork
from keyhall.storage.unit_sessions import ReadOnlyViolation, ReadSession, WriteSession

_READ_ONLY = "keyhall_read_only"

__all__ = ["Database", "ReadOnlyViolation"]

# The newest migration's revision. A process whose database already stands there starts without
# loading Alembic and the migration scripts (some 10 MB of every server's memory); a new migration
# moves it on (tests/integration/test_migrations.py holds it equal to the scripts' head).
SCHEMA_HEAD = "20261207_0019"


def _refuse_write_statement(state: Any) -> None:
    if state.session.info.get(_READ_ONLY) and (state.is_insert or state.is_update or state.is_delete):
        raise ReadOnlyViolation("a write statement in a read-only unit of work")


def _refuse_flush(session: Any, _context: Any, _instances: Any) -> None:
    if session.info.get(_READ_ONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlyViolation("a flush of changes in a read-only unit of work")


def _read_only(uow: object) -> TypeGuard[SqlUnitOfWork]:
    """Whether ``uow`` is one of this module's read-only units of work."""
    return isinstance(uow, SqlUnitOfWork) and bool(uow.session.info.get(_READ_ONLY))


class Database:
    def __init__(self, url: str, box: SecretBox, *, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        self.url = url
        self.timeout = timeout
        self.engine = build_engine(url, timeout=timeout)
        self.sessions = session_factory(self.engine)
        self.reading = reading_engine(self.engine)
        event.listen(self.sessions, "do_orm_execute", _refuse_write_statement)
        event.listen(self.sessions, "before_flush", _refuse_flush)
        self.box = box
        self.caches = StorageCaches()  # this process's; each read checks the database (storage/cache.py)
        # Health checks run here, one at a time, so that a stalled database cannot pile up waiting
        # pings (nor take the request threads): callers share the ping in flight.
        self._pinger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyhall-db-ping")
        self._ping_lock = threading.Lock()
        self._ping: Future[bool] | None = None

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def unit_of_work(self, *, read_only: bool = False) -> SqlUnitOfWork:
        """A unit of work: one connection, one transaction (``storage.unit_sessions``). ``read_only``
        ones (a GET of the API, say) begin deferred on SQLite, so they neither take nor wait for the
        write lock; any write in them fails loudly (:class:`ReadOnlyViolation`) instead of racing
        for the lock."""
        if not read_only:
            writes = WriteSession(self.engine, lambda connection: self.sessions(bind=connection), {})
            return SqlUnitOfWork(cast(Session, writes), self.box, self.caches)
        reads = ReadSession(self.reading, lambda connection: self.sessions(bind=connection), {_READ_ONLY: True})
        return SqlUnitOfWork(cast(Session, reads), self.box, self.caches)

    @property
    def reads_never_wait(self) -> bool:
        """Whether a read-only unit of work here runs (begins, reads and ends) without waiting: on
        SQLite, a deferred read under WAL takes no lock and waits for none, and the file is local.
        Running such reads on the event loop costs less than a hand-off to a thread and back."""
        return self.backend == "sqlite"

    def never_waits(self, uow: object) -> bool:
        """Whether every statement of ``uow`` runs without waiting: a read-only one where
        :attr:`reads_never_wait`."""
        return self.reads_never_wait and _read_only(uow)

    def ends_at_once(self, uow: SqlUnitOfWork) -> bool:
        """Whether ending ``uow`` can neither block nor wait: it holds no transaction, or only a read
        one on SQLite (ending a deferred read under WAL drops a snapshot: no lock, no file write).
        Else its rollback is a round trip, for a thread."""
        session = uow.session
        return not session.in_transaction() or self.never_waits(uow)

    def end_reads(self, uow: object) -> None:
        """End ``uow``'s transaction now, when the unit is read-only (nothing to lose), returning its
        connection to the pool: the rest of the request holds none. A connection that broke meanwhile
        is the pool's to discard; what was read stands."""
        if _read_only(uow):
            with contextlib.suppress(DBAPIError):
                uow.close()

    def migrate(self) -> None:
        if self.at_schema_head():
            return
        # Imported here, as below: Alembic and the migration scripts (some 10 MB) stay out of the
        # processes that do not migrate (the workers of ``keyhall serve --workers N``, and a server
        # whose database is up to date).
        from keyhall.storage import migrate

        migrate.upgrade(self.engine)

    def at_schema_head(self) -> bool:
        """Whether the database's schema is the newest one, read without Alembic (one SELECT). Any
        other answer (a new database, an older or newer revision) is left to the migrations."""
        try:
            with self.engine.connect() as connection:
                revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except DBAPIError:  # no version table yet: a new database
            return False
        return list(revisions) == [SCHEMA_HEAD]

    def purge_expired(self, now: datetime, *, audit_retention_days: int = 0, event_retention_days: int = 0,
                      trace_retention_days: int = 0, stop: Callable[[], bool] | None = None) -> dict[str, int]:
        """Delete expired sign-in state (and audit events, events and sign-in traces past retention);
        counts per kind."""
        return purge_expired(self.engine, now, audit_retention_days=audit_retention_days,
                             event_retention_days=event_retention_days, trace_retention_days=trace_retention_days,
                             stop=stop)

    def is_up_to_date(self) -> bool:
        # Imported here: see migrate().
        from keyhall.storage import migrate

        return migrate.is_up_to_date(self.engine)

    def start_ping(self) -> Future[bool]:
        """A ``SELECT 1`` round trip (the one in flight, if any): true when the database answered."""
        with self._ping_lock:
            if self._ping is None or self._ping.done():
                self._ping = self._pinger.submit(self._ping_now)
            return self._ping

    def ping(self, timeout: float | None = None) -> bool:
        """Whether the database answers within ``timeout`` seconds (by default its own bound)."""
        try:
            return self.start_ping().result(timeout=self.timeout * 2 + 1 if timeout is None else timeout)
        except FutureTimeout:
            return False

    def _ping_now(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (DBAPIError, PoolTimeout):
            return False
        return True

    def dispose(self) -> None:
        self._pinger.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
