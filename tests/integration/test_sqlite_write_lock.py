"""SQLite's write lock: a writer polls for it (``storage.engine.begin_immediate``) instead of
SQLite's coarse busy wait, takes it as soon as it is free, gives up after the database timeout,
and leaves the connection's own busy wait as it was. Real SQLite files, a second connection
holding the lock as another worker's write would."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from keyhall.storage.engine import _is_busy, build_engine, reading_engine
from tests.support.threads import run_in_threads


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path = tmp_path / "lock.db"
    engine = build_engine(f"sqlite:///{path}", timeout=5.0)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE writes (who TEXT NOT NULL)")
    yield path, engine
    engine.dispose()


def hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO writes (who) VALUES ('holder')")
    return holder


def test_a_writer_waits_for_the_lock_and_takes_it_once_freed(database: tuple[Path, Engine]) -> None:
    path, engine = database
    holder = hold_write_lock(path)
    release = threading.Timer(0.3, holder.commit)
    release.start()
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO writes (who) VALUES ('waiter')"))
            busy_timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    finally:
        release.join()
        holder.close()
    with reading_engine(engine).connect() as conn:
        order = [row[0] for row in conn.exec_driver_sql("SELECT who FROM writes ORDER BY rowid")]
        read_busy_timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert order == ["holder", "waiter"]  # it waited for the holder's commit, then wrote
    assert busy_timeout == 0  # a writer polls: SQLite's busy wait is off while it writes
    assert read_busy_timeout == 5000  # reads keep SQLite's busy wait of the database timeout


def test_a_writer_gives_up_after_the_database_timeout(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    engine = build_engine(f"sqlite:///{path}", timeout=0.3)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE writes (who TEXT NOT NULL)")
    holder = hold_write_lock(path)
    try:
        with pytest.raises(OperationalError, match="locked"), engine.begin() as conn:
            conn.execute(text("INSERT INTO writes (who) VALUES ('waiter')"))
        with reading_engine(engine).connect() as conn:  # a read still works, with the busy wait restored
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 300
            assert conn.exec_driver_sql("SELECT count(*) FROM writes").scalar() == 0
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    with engine.begin() as conn:  # and once the lock is free, a write goes through
        conn.execute(text("INSERT INTO writes (who) VALUES ('later')"))
    engine.dispose()


def test_only_a_busy_database_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "errors.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as busy:
        other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as nested:
        holder.execute("BEGIN IMMEDIATE")  # a transaction within a transaction: not a wait
    holder.rollback()
    holder.close()
    other.close()
    assert _is_busy(busy.value)
    assert not _is_busy(nested.value)


# --- the write gate: this process's writers take turns before SQLite's lock -----------------------


def _busy_failures(engine: Engine) -> list[str]:
    """Every ``BEGIN IMMEDIATE`` that found SQLite's lock taken (its first try goes through
    SQLAlchemy, whose error hook sees it; only a failed first try leads to polling)."""
    seen: list[str] = []

    def record(context: Any) -> None:
        if _is_busy(getattr(context.original_exception, "__cause__", None) or context.original_exception):
            seen.append(str(context.original_exception))

    event.listen(engine, "handle_error", record)
    return seen


def _write(engine: Engine, who: str, hold: float = 0.0) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO writes (who) VALUES (:who)"), {"who": who})
        time.sleep(hold)  # keeps the transaction open, so that the writers overlap


def test_writers_of_one_process_take_turns_without_meeting_at_sqlites_lock(database: tuple[Path, Engine]) -> None:
    _path, engine = database
    busy = _busy_failures(engine)
    def writer(number: int) -> None:
        for i in range(25):
            _write(engine, f"{number}-{i}", hold=0.001)

    errors = run_in_threads(writer, 8)
    assert not errors, errors
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM writes").scalar() == 200
    assert busy == []  # every writer waited at the gate, none polled SQLite's lock


def test_the_gate_opens_however_a_write_transaction_ends(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'ends.db'}", timeout=0.5)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE writes (who TEXT NOT NULL UNIQUE)")
    sessions = sessionmaker(bind=engine)

    def another_thread_writes(who: str) -> None:
        """Fails (after the 0.5 s timeout) if the gate was left shut."""
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                _write(engine, who)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=10)
        assert outcome == [None], outcome

    _write(engine, "committed")
    another_thread_writes("after a commit")
    def failing_work() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO writes (who) VALUES ('rolled back')"))
            raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        failing_work()
    another_thread_writes("after a rollback")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO writes (who) VALUES ('committed')"))  # a clash: the statement fails
    another_thread_writes("after a failed statement")
    session = sessions()
    session.execute(text("INSERT INTO writes (who) VALUES ('never committed')"))
    session.close()  # no commit, no rollback: the pool's reset ends the transaction
    another_thread_writes("after a session closed mid-transaction")
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO writes (who) VALUES ('invalidated')"))
    conn.invalidate()  # the connection is thrown away with its transaction
    conn.close()
    another_thread_writes("after an invalidated connection")
    with engine.connect() as read:
        names = {row[0] for row in read.exec_driver_sql("SELECT who FROM writes")}
    assert names == {"committed", "after a commit", "after a rollback", "after a failed statement",
                     "after a session closed mid-transaction", "after an invalidated connection"}
    engine.dispose()


def test_a_second_write_opened_by_the_same_thread_fails_after_the_timeout(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'nested.db'}", timeout=0.3)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE writes (who TEXT NOT NULL)")
    started = time.monotonic()
    with engine.begin() as outer:
        outer.execute(text("INSERT INTO writes (who) VALUES ('outer')"))
        with pytest.raises(OperationalError, match="locked"), engine.begin() as inner:
            inner.execute(text("INSERT INTO writes (who) VALUES ('inner')"))
    assert time.monotonic() - started < 5  # bounded by the database timeout, not a hang
    _write(engine, "later")  # and the gate works afterwards
    with engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql("SELECT who FROM writes ORDER BY rowid")] == ["outer", "later"]
    engine.dispose()
