"""SQLite's write lock: a writer polls for it (``storage.engine.begin_immediate``) instead of
SQLite's coarse busy wait, takes it as soon as it is free, gives up after the database timeout,
and leaves the connection's own busy wait as it was. Real SQLite files, a second connection
holding the lock as another worker's write would."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from keyhall.storage.engine import _is_busy, build_engine, reading_engine


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
