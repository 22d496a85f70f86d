"""A unit of work's session: one Core connection, and an ORM session over it only if used.

The request path's statements are prebuilt Core statements (:mod:`keyhall.storage.hot_queries`). Run
through a ``Session``, each unit paid for the session's transaction machinery as well (checking
its connection out, beginning, ending and forgetting: some 40-60 us a unit, measured); run on the
unit's own ``Connection`` they pay only SQLAlchemy Core's. A :class:`CoreFirstSession` stands where a
repository expects a ``Session``: the hot statements go straight to :meth:`~CoreFirstSession.core_connection`,
and anything else a repository asks of a session (``get``, ``add``, ``scalars``, ``begin_nested``...)
goes to an ORM ``Session`` made on first use and bound to that same connection. So a unit of work
runs on one connection, in one transaction, whichever statement comes first.

- :class:`ReadSession` (read-only units): on SQLite one deferred transaction (one snapshot); on
  PostgreSQL autocommit, where at READ COMMITTED each statement reads its own snapshot as it would in
  a transaction (:func:`keyhall.storage.engine.reading_engine`). Writes are refused: prebuilt ones
  here (:meth:`ReadSession.execute_core`), ORM ones by the session factory's listeners
  (``storage.database``). A raw ``text()`` write through the ORM session is not recognized; on
  PostgreSQL nothing would roll it back, so none belongs in a read-only unit.
- :class:`WriteSession` (every other unit): the connection's transaction is the unit's. The ORM
  session joins it when the connection is already in one (a prebuilt statement came first: it then
  commits nothing itself and rolls the whole transaction back), or begins it (an ORM call came first);
  either way :meth:`WriteSession.commit` flushes the ORM's pending writes and commits everything once,
  and a rollback undoes prebuilt and ORM writes alike. A prebuilt statement flushes the ORM's pending
  writes first, as the ORM's own autoflush would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.orm import Session

from keyhall.storage.prepared import StatementResult, execute, prepare


class ReadOnlyViolation(RuntimeError):
    """A write in a read-only unit of work: a programming error, never the caller's."""


class CoreFirstSession:
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

    def execute_core(self, statement: Executable, params: dict[str, Any]) -> StatementResult:
        """A prebuilt statement on the unit's connection."""
        raise NotImplementedError

    def run_prepared(self, statement: Executable, params: dict[str, Any]) -> StatementResult:
        """``statement`` on the unit's connection: straight on the driver's cursor where it can
        (:mod:`keyhall.storage.prepared`), else through Core."""
        connection = self.core_connection()
        if not connection.dispatch.before_cursor_execute:
            prepared = prepare(statement, connection.dialect, frozenset(params))
            if prepared is not None:
                return execute(connection, prepared, params)
        return connection.execute(statement, params)

    @property
    def dialect_name(self) -> str:
        """The database's dialect (``sqlite``, ``postgresql``), known without a connection."""
        return self._engine.dialect.name

    @property
    def orm_in_use(self) -> bool:
        """Whether the ORM session has been made (a repository needed it)."""
        return self._session is not None

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
        """End the transaction and give the connection back; the unit may be used again afterwards
        (a new connection, a new transaction)."""
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


class ReadSession(CoreFirstSession):
    """A read-only unit's session (module docstring)."""

    def execute_core(self, statement: Executable, params: dict[str, Any]) -> StatementResult:
        """A prebuilt read on the unit's connection. A write is refused before it is sent: on
        PostgreSQL a read-only unit runs in autocommit, where nothing would roll it back."""
        if getattr(statement, "is_dml", False):
            raise ReadOnlyViolation("a write statement in a read-only unit of work")
        return self.run_prepared(statement, params)


class WriteSession(CoreFirstSession):
    """A writing unit's session (module docstring)."""

    def execute_core(self, statement: Executable, params: dict[str, Any]) -> StatementResult:
        """A prebuilt statement in the unit's transaction, after the ORM's pending writes."""
        if self._session is not None:
            self._session.flush()
        return self.run_prepared(statement, params)

    def commit(self) -> None:
        """Flush and end the ORM's part (which commits the transaction only when the ORM began it),
        then commit the connection's transaction if it is still open."""
        if self._session is not None:
            self._session.commit()
        if self._connection is not None and self._connection.in_transaction():
            self._connection.commit()
