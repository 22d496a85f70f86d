"""Engine factory: SQLite (WAL, foreign keys on) by default, PostgreSQL by URL."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

from keyhall.security.private_files import create_private_file

DEFAULT_TIMEOUT_SECONDS = 5.0


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def build_engine(url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Engine:
    """``timeout`` (``KEYHALL_DATABASE_TIMEOUT_SECONDS``) bounds every wait: SQLite's busy wait;
    PostgreSQL's statements, lock waits, pool checkout and silent servers (``storage.postgres``)."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            # 0600 before SQLite opens it (its -wal and -shm files take the same mode); the
            # directory 0700 when it is made here.
            create_private_file(Path(parsed.database))
        engine = create_engine(url, future=True,
                               connect_args={"check_same_thread": False, "timeout": timeout})  # the busy wait
        event.listen(engine, "connect", _sqlite_pragmas)
        gate = WriteGate()
        event.listen(engine, "begin", lambda connection: _sqlite_begin(connection, timeout, gate))
        gate.install(engine)
        _RAW_BEGINS[engine.dialect] = lambda pooled, read_only: begin_raw(pooled, read_only, timeout, gate)
        return engine
    # Imported here: psycopg (some 9 MB in every worker) is loaded only for PostgreSQL.
    from keyhall.storage import postgres

    # A database that accepts connections but never answers must give 503s, not hung workers. The
    # pool checks liveness itself, and only of connections left idle (postgres.check_liveness).
    engine = create_engine(url, future=True, pool_size=10, max_overflow=20,
                           pool_timeout=timeout, connect_args=postgres.connect_args(timeout))
    postgres.bound_waits(engine, timeout)
    return engine


#: An execution option: transactions begun on an engine carrying it are read-only (see
#: :func:`reading_engine`); on SQLite they start deferred and take no write lock.
READ_ONLY = "keyhall_read_only"


def reading_engine(engine: Engine) -> Engine:
    """The same engine and pool, for read-only units of work.

    On PostgreSQL their connections run in autocommit: at READ COMMITTED (the default, and
    Keyhall's) every statement reads a snapshot of its own, in a transaction or not, so a unit that
    only reads loses nothing without one, and saves the round trips of its ``BEGIN`` and its
    ``ROLLBACK`` (half of an API read's four). The pool sets the connection back to transactions
    when it is returned."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    return engine.execution_options(**options)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (see _sqlite_begin): read-then-write transactions take the
    # write lock up front and cannot then deadlock into "database is locked".
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection, timeout: float, gate: WriteGate | None = None) -> None:
    # A read-only transaction (which :mod:`keyhall.storage.database` guards against writes) starts
    # deferred: it reads a snapshot under WAL and never waits for, nor blocks, a writer. Every
    # other one takes the write lock up front, since a deferred transaction that reads and then
    # writes gets SQLITE_BUSY at once when another connection wrote in between, without waiting.
    if _sqlite3(connection).in_transaction:
        return  # begun on the driver already (:func:`begin_raw`), the connection now joins it
    if connection.get_execution_options().get(READ_ONLY):
        _set_busy_wait(connection.connection, timeout)
        connection.exec_driver_sql("BEGIN")
    else:
        begin_immediate(connection, timeout, gate)


RawBegin = Callable[[PoolProxiedConnection, bool], None]
#: How each SQLite engine (by its dialect, which its read-only variant shares) begins a transaction
#: on a pooled connection with no SQLAlchemy ``Connection`` around it (:func:`begin_raw`).
_RAW_BEGINS: WeakKeyDictionary[Dialect, RawBegin] = WeakKeyDictionary()


def raw_begin(engine: Engine, read_only: bool) -> RawBegin | None:
    """How to begin a transaction straight on one of ``engine``'s pooled connections, for a unit of
    work that runs its statements on the driver (``storage.unit_sessions``); ``None`` where it must
    have a SQLAlchemy ``Connection``. SQLite: every unit (:func:`begin_raw`). PostgreSQL: writing
    units, whose transaction psycopg opens at their first statement, as it does under a
    ``Connection`` (SQLAlchemy's begin sends nothing there); its read-only units run in autocommit,
    which a ``Connection`` of :func:`reading_engine` sets and the pool resets."""
    begin = _RAW_BEGINS.get(engine.dialect)
    if begin is not None:
        return begin
    if engine.dialect.name == "postgresql" and not read_only:
        return _begin_on_first_statement
    return None


def _begin_on_first_statement(pooled: PoolProxiedConnection, _read_only: bool) -> None:
    if getattr(pooled.driver_connection, "autocommit", False):
        raise RuntimeError("a pooled PostgreSQL connection came back in autocommit")  # never half-atomic


def begin_raw(pooled: PoolProxiedConnection, read_only: bool, timeout: float, gate: WriteGate | None) -> None:
    """What :func:`_sqlite_begin` does, on the driver's connection itself, for a unit of work that
    runs its statements there (``storage.unit_sessions``): the same deferred read, or the same write
    lock taken through the gate. A failure is SQLAlchemy's ``OperationalError``, as it would be."""
    raw = pooled.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    if read_only:
        _set_busy_wait(pooled, timeout)
        try:
            raw.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            raise OperationalError("BEGIN", None, exc) from exc
        return
    _set_busy_wait(pooled, 0.0)
    deadline = time.monotonic() + timeout
    if gate is not None:
        gate.enter(raw, deadline)
    try:
        try:
            raw.execute("BEGIN IMMEDIATE")  # the usual case: the lock is free at once
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            _poll_write_lock(raw, deadline, OperationalError("BEGIN IMMEDIATE", None, exc))
    except BaseException:
        if gate is not None:
            gate.leave(raw)
        raise


#: How long a writer waiting for SQLite's write lock sleeps between tries: from the first to the
#: longest, doubling (with jitter, so that waiters do not wake in step).
FIRST_RETRY_SECONDS = 0.0001
LONGEST_RETRY_SECONDS = 0.002


class WriteGate:
    """One write transaction at a time among the threads of this process, in front of SQLite's own
    write lock (which serializes them anyway): a writer that finds the gate taken sleeps on it and
    wakes as soon as the holder commits or rolls back, where it would otherwise poll SQLite (an
    error raised and handled per failed try) while the lock sits with a neighbouring thread. Under
    many small concurrent writes (rate-limit counters beside API reads, a directory's initial sync)
    that polling was most of the cost of waiting. Writers of other processes (``--workers``,
    another instance) still meet at SQLite's lock, polled as before.

    The gate is held from ``BEGIN IMMEDIATE`` until that connection's transaction ends: its COMMIT
    or ROLLBACK (the dialect's ``do_commit``/``do_rollback``, whether SQLAlchemy or the pool's
    reset-on-return calls them), and, should neither come, the connection's return to the pool, its
    invalidation or close. Waiting for it is bounded by the database timeout, like waiting for
    SQLite's lock: a write opened while the same thread holds another fails after it (as it did at
    SQLite's lock) instead of hanging."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: object | None = None  # the DBAPI connection whose write transaction holds the gate

    def enter(self, raw: object, deadline: float) -> None:
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            cause = sqlite3.OperationalError("database is locked (by another write transaction of this process)")
            raise OperationalError("BEGIN IMMEDIATE", None, cause)
        self._holder = raw

    def leave(self, connection: object) -> None:
        """Open the gate if ``connection`` (a DBAPI connection or the pool's proxy of one) holds it."""
        raw = getattr(connection, "dbapi_connection", connection)
        if raw is not None and raw is self._holder:
            self._holder = None
            self._lock.release()

    def install(self, engine: Engine) -> None:
        """Open the gate when a transaction of ``engine`` ends, or its connection does."""
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(connection: Any) -> None:
            try:
                commit(connection)
            finally:
                self.leave(connection)

        def do_rollback(connection: Any) -> None:
            try:
                rollback(connection)
            finally:
                self.leave(connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign, assignment]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign, assignment]
        for name in ("checkin", "invalidate", "close"):
            event.listen(engine, name, lambda dbapi_connection, *_rest: self.leave(dbapi_connection))


def begin_immediate(connection: Connection, timeout: float, gate: WriteGate | None = None) -> None:
    """``BEGIN IMMEDIATE`` on ``connection``, waiting at most ``timeout`` seconds for the write lock.

    SQLite's own busy wait sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries: a writer that finds
    the lock taken for a tenth of a millisecond sleeps at least a millisecond, and under a stream
    of small writes (a directory's initial sync through several workers) the waits grow to tens of
    milliseconds while the lock sits free. Here the wait is polled instead, from 0.1 ms up to 2 ms
    between tries, with SQLite's busy wait off. Once the write lock is held, no statement of the
    transaction waits for another connection under WAL; a read-only transaction turns the busy wait
    back on (``_set_busy_wait``) for the rare moments a reader must wait. With a ``gate``, the
    threads of this process take turns at it first (:class:`WriteGate`)."""
    _set_busy_wait(connection.connection, 0.0)
    raw = _sqlite3(connection)
    deadline = time.monotonic() + timeout
    if gate is not None:
        gate.enter(raw, deadline)
    try:
        _take_write_lock(connection, raw, deadline)
    except BaseException:
        if gate is not None:
            gate.leave(raw)
        raise


def _take_write_lock(connection: Connection, raw: sqlite3.Connection, deadline: float) -> None:
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the usual case: the lock is free at once
        return
    except OperationalError as exc:
        if not _is_busy(exc.orig):
            raise
        failure = exc
    # Then straight on sqlite3 (a failed try costs microseconds, not SQLAlchemy's error handling).
    _poll_write_lock(raw, deadline, failure)


def _poll_write_lock(raw: sqlite3.Connection, deadline: float, failure: OperationalError) -> None:
    """Try ``BEGIN IMMEDIATE`` again, pausing longer each time, until ``deadline``; ``failure`` when
    the lock never came."""
    pause = FIRST_RETRY_SECONDS
    while time.monotonic() < deadline:
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, LONGEST_RETRY_SECONDS)
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc  # as SQLAlchemy would say it
    raise failure


_BUSY_WAIT = "keyhall_busy_timeout"  # in the pooled connection's info: the busy wait it has now


def _set_busy_wait(pooled: PoolProxiedConnection, seconds: float) -> None:
    """SQLite's busy wait of this pooled connection, changed only when it differs (a stream of writes,
    or of reads, on one pooled connection costs no statement); the PRAGMA goes to sqlite3 itself, as
    it is not the work's statement."""
    info = pooled.info
    millis = int(seconds * 1000)
    if info.get(_BUSY_WAIT) != millis:
        raw = pooled.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.execute(f"PRAGMA busy_timeout = {millis}")
        info[_BUSY_WAIT] = millis


def _sqlite3(connection: Connection) -> sqlite3.Connection:
    raw = connection.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _is_busy(error: BaseException | None) -> bool:
    """SQLITE_BUSY ("database is locked", or one of its extended codes such as SQLITE_BUSY_RECOVERY),
    as opposed to any other failure of the statement."""
    code = getattr(error, "sqlite_errorcode", None)  # the extended result code (Python 3.11+)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
