"""A SQLite unit of work whose statements are all prebuilt runs on the driver's connection, with no
SQLAlchemy ``Connection`` (``storage.unit_sessions``, ``storage.engine.begin_raw``): it takes the
same write lock through the same gate, waits and gives up as a ``Connection`` would, never leaves
the gate shut, and hands its open transaction over when the ORM joins in. Real SQLite files, a
second connection holding the lock as another worker's write would."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, MetaData, String, Table, event, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from keyhall.storage.engine import build_engine, reading_engine
from keyhall.storage.prepared import PreparedResult
from keyhall.storage.unit_sessions import ReadSession, WriteSession
from tests.support.threads import run_in_threads

WRITES = Table("writes", MetaData(), Column("who", String, primary_key=True))
INSERT = insert(WRITES)
ALL = select(WRITES.c.who).order_by(WRITES.c.who)


def _engine(path: Path, timeout: float = 5.0) -> Engine:
    engine = build_engine(f"sqlite:///{path}", timeout=timeout)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS writes (who TEXT PRIMARY KEY)")
    return engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    built = _engine(tmp_path / "lane.db")
    yield built
    built.dispose()


def _session_over(connection: Any) -> Session:
    return Session(bind=connection)


def _writes(engine: Engine) -> WriteSession:
    return WriteSession(engine, _session_over, {})


def _write(engine: Engine, who: str) -> None:
    """One writing unit of work: insert ``who``, commit, give the connection back."""
    unit = _writes(engine)
    unit.run_prepared(INSERT, {"who": who})
    unit.commit()
    unit.close()


def _written(engine: Engine) -> list[str]:
    unit = ReadSession(reading_engine(engine), _session_over, {})
    try:
        return [row.who for row in unit.run_prepared(ALL, {})]
    finally:
        unit.close()


def _connections_made(engine: Engine) -> list[object]:
    made: list[object] = []
    event.listen(engine, "engine_connect", made.append)
    return made


def test_prebuilt_statements_run_without_a_connection_and_commit(engine: Engine) -> None:
    made = _connections_made(engine)
    unit = _writes(engine)
    result = unit.run_prepared(INSERT, {"who": "a"})
    assert isinstance(result, PreparedResult)
    assert result.rowcount == 1
    assert unit.in_transaction()
    unit.commit()
    assert not unit.in_transaction()
    unit.close()
    assert _written(engine) == ["a"]
    assert made == []  # no SQLAlchemy Connection was made, for the write nor the read


def test_a_unit_closed_without_commit_leaves_nothing_and_the_gate_open(engine: Engine) -> None:
    unit = _writes(engine)
    unit.run_prepared(INSERT, {"who": "dropped"})
    unit.close()
    unit = _writes(engine)
    unit.run_prepared(INSERT, {"who": "rolled-back"})
    unit.rollback()
    unit.close()
    done = threading.Event()

    def write_from_another_thread() -> None:  # would wait out the timeout at a shut gate
        other = _writes(engine)
        other.run_prepared(INSERT, {"who": "after"})
        other.commit()
        other.close()
        done.set()

    thread = threading.Thread(target=write_from_another_thread)
    thread.start()
    thread.join(timeout=4)
    assert done.is_set()
    assert _written(engine) == ["after"]


def test_a_driver_error_is_sqlalchemys_and_the_gate_opens(engine: Engine) -> None:
    _write(engine, "twice")
    unit = _writes(engine)
    with pytest.raises(IntegrityError):
        unit.run_prepared(INSERT, {"who": "twice"})
    unit.close()
    _write(engine, "next")
    assert _written(engine) == ["next", "twice"]


def test_the_orm_joins_the_transaction_begun_on_the_driver(engine: Engine) -> None:
    def orm_write(unit: WriteSession, who: str) -> None:
        unit.core_connection().execute(insert(WRITES), {"who": who})  # Core over the same connection

    unit = _writes(engine)
    unit.run_prepared(INSERT, {"who": "driver"})
    orm_write(unit, "core")
    session: Session = unit.orm
    session.execute(insert(WRITES), {"who": "orm"})
    unit.rollback()
    unit.close()
    assert _written(engine) == []  # one transaction: the rollback undid all three
    unit = _writes(engine)
    unit.run_prepared(INSERT, {"who": "driver"})
    orm_write(unit, "core")
    unit.orm.execute(insert(WRITES), {"who": "orm"})
    unit.commit()
    unit.close()
    assert _written(engine) == ["core", "driver", "orm"]


def test_a_driver_lane_writer_waits_for_the_lock_and_takes_it_once_freed(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    engine = _engine(path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO writes (who) VALUES ('holder')")
    release = threading.Timer(0.3, holder.commit)
    release.start()
    try:
        _write(engine, "waiter")
    finally:
        release.join()
        holder.close()
    assert _written(engine) == ["holder", "waiter"]
    engine.dispose()


def test_a_driver_lane_writer_gives_up_after_the_timeout_and_opens_the_gate(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    engine = _engine(path, timeout=0.3)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        unit = _writes(engine)
        with pytest.raises(OperationalError, match="locked"):
            unit.run_prepared(INSERT, {"who": "waiter"})
        unit.close()
        assert _written(engine) == []  # a read still works meanwhile
    finally:
        holder.rollback()
        holder.close()
    _write(engine, "later")  # the gate is open again: the next write goes through at once
    assert _written(engine) == ["later"]
    engine.dispose()


def test_driver_lane_writers_of_one_process_take_turns(engine: Engine) -> None:
    def writer(number: int) -> None:
        for i in range(25):
            _write(engine, f"{number}-{i:02d}")

    errors = run_in_threads(writer, 8)
    assert not errors, errors
    assert len(_written(engine)) == 200  # none timed out at the gate or at SQLite's lock


def test_statement_listeners_see_the_begin_of_every_unit(engine: Engine) -> None:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: seen.append(statement))
    unit = _writes(engine)
    result = unit.run_prepared(INSERT, {"who": "counted"})
    unit.commit()
    unit.close()
    assert not isinstance(result, PreparedResult)  # through Core, so that the listener sees it
    assert seen[0] == "BEGIN IMMEDIATE"
    assert any(statement.startswith("INSERT INTO writes") for statement in seen)
