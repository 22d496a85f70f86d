"""Which units may begin on the driver, and the PostgreSQL lane's refusal of a pooled connection left
in autocommit (a write run there would not be atomic). Pure code: the engines are never connected."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import create_engine

from keyhall.storage.engine import build_engine, raw_begin


def _pooled(autocommit: bool) -> Any:
    return cast(Any, SimpleNamespace(driver_connection=SimpleNamespace(autocommit=autocommit)))


def test_postgresql_writes_begin_on_the_driver_and_its_reads_do_not() -> None:
    engine = create_engine("postgresql+psycopg://keyhall@127.0.0.1:1/none")
    begin = raw_begin(engine, read_only=False)
    assert begin is not None
    begin(_pooled(autocommit=False), False)  # nothing to send: psycopg begins at the first statement
    assert raw_begin(engine, read_only=True) is None  # autocommit reads keep their Connection


def test_a_postgresql_connection_left_in_autocommit_is_refused() -> None:
    begin = raw_begin(create_engine("postgresql+psycopg://keyhall@127.0.0.1:1/none"), read_only=False)
    assert begin is not None
    with pytest.raises(RuntimeError, match="autocommit"):
        begin(_pooled(autocommit=True), False)


def test_sqlite_begins_every_unit_on_the_driver(tmp_path: Any) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'lane.db'}")
    assert raw_begin(engine, read_only=True) is not None
    assert raw_begin(engine, read_only=False) is not None
    engine.dispose()
