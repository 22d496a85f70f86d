"""Engine factory: SQLite (WAL, foreign keys on) by default, PostgreSQL by URL."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

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
        event.listen(engine, "begin", lambda connection: _sqlite_begin(connection, timeout))
        return engine
    # Imported here: psycopg (some 9 MB in every worker) is loaded only for PostgreSQL.
    from keyhall.storage import postgres

    # A database that accepts connections but never answers must give 503s, not hung workers.
    engine = create_engine(url, future=True, pool_pre_ping=True, pool_size=10, max_overflow=20,
                           pool_timeout=timeout, connect_args=postgres.connect_args(timeout))
    postgres.bound_waits(engine, timeout)
    return engine


#: An execution option: transactions begun on an engine carrying it are read-only (see
#: :func:`reading_engine`); on SQLite they start deferred and take no write lock.
READ_ONLY = "keyhall_read_only"


def reading_engine(engine: Engine) -> Engine:
    """The same engine and pool, for read-only units of work."""
    return engine.execution_options(**{READ_ONLY: True})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (see _sqlite_begin): read-then-write transactions take the
    # write lock up front and cannot then deadlock into "database is locked".
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection, timeout: float) -> None:
    # A read-only transaction (which :mod:`keyhall.storage.database` guards against writes) starts
    # deferred: it reads a snapshot under WAL and never waits for, nor blocks, a writer. Every
    # other one takes the write lock up front, since a deferred transaction that reads and then
    # writes gets SQLITE_BUSY at once when another connection wrote in between, without waiting.
    if connection.get_execution_options().get(READ_ONLY):
        _set_busy_wait(connection, timeout)
        connection.exec_driver_sql("BEGIN")
    else:
        begin_immediate(connection, timeout)


#: How long a writer waiting for SQLite's write lock sleeps between tries: from the first to the
#: longest, doubling (with jitter, so that waiters do not wake in step).
FIRST_RETRY_SECONDS = 0.0001
LONGEST_RETRY_SECONDS = 0.002


def begin_immediate(connection: Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE`` on ``connection``, waiting at most ``timeout`` seconds for the write lock.

    SQLite's own busy wait sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries: a writer that finds
    the lock taken for a tenth of a millisecond sleeps at least a millisecond, and under a stream
    of small writes (a directory's initial sync through several workers) the waits grow to tens of
    milliseconds while the lock sits free. Here the wait is polled instead, from 0.1 ms up to 2 ms
    between tries, with SQLite's busy wait off. Once the write lock is held, no statement of the
    transaction waits for another connection under WAL; a read-only transaction turns the busy wait
    back on (``_set_busy_wait``) for the rare moments a reader must wait."""
    _set_busy_wait(connection, 0.0)
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the usual case: the lock is free at once
        return
    except OperationalError as exc:
        if not _is_busy(exc.orig):
            raise
        failure = exc
    # Then straight on sqlite3 (a failed try costs microseconds, not SQLAlchemy's error handling).
    raw = _sqlite3(connection)
    deadline = time.monotonic() + timeout
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


def _set_busy_wait(connection: Connection, seconds: float) -> None:
    """SQLite's busy wait of this connection, changed only when it differs (a stream of writes, or of
    reads, on one pooled connection costs no statement); the PRAGMA goes to sqlite3 itself, as it is
    not the work's statement."""
    info = connection.connection.info
    millis = int(seconds * 1000)
    if info.get(_BUSY_WAIT) != millis:
        _sqlite3(connection).execute(f"PRAGMA busy_timeout = {millis}")
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
