"""A read-only unit of work's session: one Core connection, and an ORM session over it only if used.

The request path's reads are prebuilt Core statements (:mod:`keyhall.storage.hot_queries`). Run
through a ``Session``, each unit paid for the session's transaction machinery as well (checking
its connection out, beginning, ending and forgetting: some 40-50 us a request, measured); run on
the unit's own ``Connection`` they pay only SQLAlchemy Core's. ``ReadSession`` stands where a
repository expects a ``Session``: the hot queries go straight to :meth:`core_connection`, and
anything else a repository asks of a session (``get``, ``scalars``, ...) goes to an ORM ``Session``
made on first use and bound to that same connection. So a unit of work reads through one
connection: on SQLite in one deferred transaction (one snapshot); on PostgreSQL in autocommit, where
at READ COMMITTED each statement reads its own snapshot as it would in a transaction
(:func:`keyhall.storage.engine.reading_engine`).

Writes are refused: prebuilt ones here (:meth:`ReadSession.execute_core`), ORM ones by the session
factory's listeners (``storage.database``). A raw ``text()`` write through the ORM session is not
recognized; on PostgreSQL nothing would roll it back, so none belongs in a read-only unit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, Executable
from sqlalchemy.orm import Session


class ReadOnlyViolation(RuntimeError):
    """A write in a read-only unit of work: a programming error, never the caller's."""


class ReadSession:
    """Lazily: a connection of ``engine`` (on first statement), and an ORM session over it (on
    first ORM use). ``info`` is the unit's own, as a session's is."""

    def __init__(self, engine: Engine, make_session: Callable[[Connection], Session], info: dict[str, Any]):
        self._engine = engine
        self._make_session = make_session
        self._connection: Connection | None = None
        self._session: Session | None = None
        self.info = info

    def core_connection(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def execute_core(self, statement: Executable, params: dict[str, Any]) -> CursorResult[Any]:
        """A prebuilt read on the unit's connection. A write is refused before it is sent: on
        PostgreSQL a read-only unit runs in autocommit, where nothing would roll it back."""
        if getattr(statement, "is_dml", False):
            raise ReadOnlyViolation("a write statement in a read-only unit of work")
        return self.core_connection().execute(statement, params)

    @property
    def orm(self) -> Session:
        if self._session is None:
            self._session = self._make_session(self.core_connection())
            self._session.info.update(self.info)
        return self._session

    def in_transaction(self) -> bool:
        return self._connection is not None and self._connection.in_transaction()

    def flush(self) -> None:
        if self._session is not None:
            self._session.flush()

    def rollback(self) -> None:
        if self._session is not None:
            self._session.rollback()
        if self._connection is not None:
            self._connection.rollback()

    def close(self) -> None:
        """End the transaction and give the connection back; the unit may read again afterwards
        (a new connection, a new snapshot)."""
        session, connection = self._session, self._connection
        self._session = self._connection = None
        try:
            if session is not None:
                session.close()
        finally:
            if connection is not None:
                connection.close()  # a rollback (pool reset), then back to the pool

    def __getattr__(self, name: str) -> Any:  # what else a repository asks of a session
        return getattr(self.orm, name)
