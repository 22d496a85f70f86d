"""A unit of work's session: one Core connection, and an ORM session over it only if used.

The request path's statements are prebuilt Core statements (:mod:`keyhall.storage.hot_queries`). Run
through a ``Session``, each unit paid for the session's transaction machinery as well (checking
its connection out, beginning, ending and forgetting: some 40-60 us a unit, measured); run on the
unit's own ``Connection`` they pay only SQLAlchemy Core's, and run on the driver's cursor
(:mod:`keyhall.storage.prepared`) not even that. A :class:`CoreFirstSession` stands where a
repository expects a ``Session``: the hot statements go straight to the unit's connection (often to
the pooled driver connection itself, until something else is needed: see :class:`CoreFirstSession`),
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
  commits nothing itself and rolls the whole transaction back; over a transaction begun on the
  driver, it begins its own over that one, and commits or rolls back all of it), or begins it (an
  ORM call came first);
  either way :meth:`WriteSession.commit` flushes the ORM's pending writes and commits everything once,
  and a rollback undoes prebuilt and ORM writes alike. A prebuilt statement flushes the ORM's pending
  writes first, as the ORM's own autoflush would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from keyhall.storage.engine import RawBegin, raw_begin
from keyhall.storage.prepared import StatementResult, execute, execute_on_driver, prepare


class ReadOnlyViolation(RuntimeError):
    """A write in a read-only unit of work: a programming error, never the caller's."""


class CoreFirstSession:
    """Lazily: a connection of ``engine`` (on first statement), and an ORM session over it (on
    first ORM use). ``info`` is the unit's own, as a session's is.

    A unit whose statements are all prebuilt never makes a SQLAlchemy ``Connection`` (on SQLite, and
    for a writing unit on PostgreSQL: :func:`~keyhall.storage.engine.raw_begin`): it checks a
    connection out of the pool, begins its transaction on the driver (the very ``BEGIN`` or write
    lock :mod:`keyhall.storage.engine` takes for a ``Connection``; on PostgreSQL the driver's own
    implicit one), runs its statements there (:mod:`keyhall.storage.prepared`), and commits or rolls
    back through the dialect, whose hooks open SQLite's write gate; the pool's return resets it as
    ever. On SQLite, making a ``Connection``, beginning and ending it cost more than the unit's keyed
    reads (a GET of a connection went from about 450 to 370 us in-process). When the ORM or Core is
    needed after all, a ``Connection`` is made over that same pooled connection and joins the
    transaction already open. With statement listeners on the engine (the tests that count
    statements), every unit takes the ``Connection`` path, so that they see its ``BEGIN`` too."""

    read_only = False

    def __init__(self, engine: Engine, make_session: Callable[[Connection], Session], info: dict[str, Any]):
        self._engine = engine
        self._make_session = make_session
        self._connection: Connection | None = None
        self._session: Session | None = None
        self._pooled: PoolProxiedConnection | None = None  # checked out for the driver's lane, no Connection yet
        self.info = info

    def core_connection(self) -> Connection:
        if self._connection is None:
            if self._pooled is not None:  # join the transaction begun on the driver
                self._connection = self._engine._connection_cls(self._engine, connection=self._pooled)
                self._pooled = None
            else:
                self._connection = self._engine.connect()
        return self._connection

    def execute_core(self, statement: Executable, params: dict[str, Any]) -> StatementResult:
        """A prebuilt statement on the unit's connection."""
        raise NotImplementedError

    def run_prepared(self, statement: Executable, params: dict[str, Any]) -> StatementResult:
        """``statement`` on the unit's connection: straight on the driver's cursor where it can
        (:mod:`keyhall.storage.prepared`), else through Core."""
        if self._connection is None:
            begin = raw_begin(self._engine, self.read_only)
            if begin is not None and not self._engine.dispatch.before_cursor_execute:
                prepared = prepare(statement, self._engine.dialect, frozenset(params))
                if prepared is not None:
                    return execute_on_driver(self._driver_lane(begin), self._engine.dialect, prepared, params)
        connection = self.core_connection()
        if not connection.dispatch.before_cursor_execute:
            prepared = prepare(statement, connection.dialect, frozenset(params))
            if prepared is not None:
                return execute(connection, prepared, params)
        return connection.execute(statement, params)

    def _driver_lane(self, begin: RawBegin) -> PoolProxiedConnection:
        if self._pooled is None:
            pooled = self._engine.raw_connection()
            try:
                begin(pooled, self.read_only)
            except BaseException:
                pooled.close()
                raise
            self._pooled = pooled
        return self._pooled

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
        if self._pooled is not None:
            return True  # begun when checked out, until committed or rolled back
        return self._connection is not None and self._connection.in_transaction()

    def flush(self) -> None:
        if self._session is not None:
            self._session.flush()

    def rollback(self) -> None:
        if self._pooled is not None:
            self._end_on_driver(self._engine.dialect.do_rollback)
            return
        if self._session is not None:
            self._session.rollback()
        if self._connection is not None:
            self._connection.rollback()

    def _end_on_driver(self, end: Callable[[Any], None]) -> None:
        """Commit or roll back the driver's lane (through the dialect, whose hooks open the write
        gate) and give the connection back; the unit may be used again afterwards."""
        pooled, self._pooled = self._pooled, None
        assert pooled is not None
        try:
            end(pooled)
        finally:
            pooled.close()

    def close(self) -> None:
        """End the transaction and give the connection back; the unit may be used again afterwards
        (a new connection, a new transaction)."""
        session, connection, pooled = self._session, self._connection, self._pooled
        self._session = self._connection = self._pooled = None
        try:
            if session is not None:
                session.close()
        finally:
            if connection is not None:
                connection.close()  # a rollback (pool reset), then back to the pool
            if pooled is not None:
                pooled.close()  # the same

    def __getattr__(self, name: str) -> Any:  # what else a repository asks of a session
        return getattr(self.orm, name)


class ReadSession(CoreFirstSession):
    """A read-only unit's session (module docstring)."""

    read_only = True

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
        if self._pooled is not None:
            self._end_on_driver(self._engine.dialect.do_commit)
            return
        if self._session is not None:
            self._session.commit()
        if self._connection is not None and self._connection.in_transaction():
            self._connection.commit()
