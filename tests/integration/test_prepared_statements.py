"""Prebuilt statements run on the driver's cursor (``keyhall.storage.prepared``) answer exactly as
SQLAlchemy Core does, on SQLite and PostgreSQL: the same rows, the same Python types (timezone-aware
UTC timestamps, JSON documents), the same exceptions, and no statement of the request path silently
falls back to Core."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, event, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.base import Executable

from keyhall.runtime import Runtime
from keyhall.storage import hot_queries, prepared
from keyhall.storage.models import LoginTransactionRow, SigningKeyRow
from keyhall.storage.prepared import PreparedResult
from keyhall.storage.unit_of_work import SqlUnitOfWork
from keyhall.storage.unit_sessions import CoreFirstSession
from tests.support.database import fresh_database
from tests.support.settings import make_settings

NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with fresh_database(tmp_path_factory.mktemp("prepared-db")) as url:
        built = Runtime.build(make_settings(tmp_path_factory.mktemp("prepared"), url))
        built.database.migrate()
        yield built
        built.database.dispose()


def _session(uow: SqlUnitOfWork) -> CoreFirstSession:
    session = uow.session
    assert isinstance(session, CoreFirstSession)
    return session


def _core(uow: SqlUnitOfWork, statement: Executable, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in _session(uow).core_connection().execute(statement, params)]


def _transaction(tx_id: str, **changes: Any) -> dict[str, Any]:
    return {"id": tx_id, "kind": "oidc", "parent_id": None, "data": {"state": "s", "nested": {"n": [1, 2]}},
            "created_at": NOW, "expires_at": NOW + timedelta(minutes=10), "consumed_at": None, **changes}


def test_a_prepared_insert_and_read_give_what_core_gives(runtime: Runtime) -> None:
    with runtime.database.unit_of_work() as uow:
        inserted = hot_queries.run(uow.session, hot_queries.INSERT_LOGIN_TRANSACTION, **_transaction("tx-read"))
        assert isinstance(inserted, PreparedResult)
        assert inserted.rowcount == 1
        uow.commit()
    with runtime.database.unit_of_work(read_only=True) as uow:
        result = hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="tx-read")
        assert isinstance(result, PreparedResult)  # the fast lane, not Core
        row = result.first()
        assert tuple(row) == _core(uow, hot_queries.LOGIN_TRANSACTION_BY_ID, id="tx-read")[0]
        assert row.data == {"state": "s", "nested": {"n": [1, 2]}}
        assert row.created_at == NOW
        assert row.created_at.tzinfo is not None
        assert row.expires_at == NOW + timedelta(minutes=10)
        assert row.consumed_at is None
        assert row._mapping["kind"] == "oidc"
        assert hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="none").first() is None
        assert hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="none").scalar() is None


def test_an_update_returning_spends_once_and_rolls_back_with_its_unit(runtime: Runtime) -> None:
    with runtime.database.unit_of_work() as uow:
        hot_queries.run(uow.session, hot_queries.INSERT_LOGIN_TRANSACTION, **_transaction("tx-spend"))
        uow.commit()
    later = NOW + timedelta(minutes=1)
    with runtime.database.unit_of_work() as uow:  # spent, then rolled back: not committed
        spent = hot_queries.run(uow.session, hot_queries.CONSUME_LOGIN_TRANSACTION, b_id="tx-spend", b_kind="oidc",
                                b_now=later).first()
        assert spent is not None
        assert spent.consumed_at == later
    with runtime.database.unit_of_work() as uow:
        wrong_kind = hot_queries.run(uow.session, hot_queries.CONSUME_LOGIN_TRANSACTION, b_id="tx-spend",
                                     b_kind="saml", b_now=later)
        assert wrong_kind.first() is None
        first = hot_queries.run(uow.session, hot_queries.CONSUME_LOGIN_TRANSACTION, b_id="tx-spend", b_kind="oidc",
                                b_now=later).first()
        again = hot_queries.run(uow.session, hot_queries.CONSUME_LOGIN_TRANSACTION, b_id="tx-spend", b_kind="oidc",
                                b_now=later).first()
        assert first is not None
        assert again is None
        updated = hot_queries.run(uow.session, hot_queries.SET_LOGIN_TRANSACTION_DATA, b_id="tx-spend",
                                  b_data={"changed": True})
        assert updated.rowcount == 1
        uow.commit()
    with runtime.database.unit_of_work(read_only=True) as uow:
        row = hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="tx-spend").first()
        assert row.consumed_at == later
        assert row.data == {"changed": True}


def test_a_driver_error_is_sqlalchemys_and_the_unit_stays_usable(runtime: Runtime) -> None:
    with runtime.database.unit_of_work() as uow:
        hot_queries.run(uow.session, hot_queries.INSERT_LOGIN_TRANSACTION, **_transaction("tx-twice"))
        uow.commit()
    with runtime.database.unit_of_work() as uow, pytest.raises(IntegrityError):
        hot_queries.run(uow.session, hot_queries.INSERT_LOGIN_TRANSACTION, **_transaction("tx-twice"))
    with runtime.database.unit_of_work(read_only=True) as uow:
        assert hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="tx-twice").first() is not None


def test_a_fixed_limit_is_sent_for_the_caller(runtime: Runtime) -> None:
    """``ACTIVE_SIGNING_KEY`` has ``LIMIT 1``: a parameter the caller never names."""
    rows = [{"kid": f"k{n}", "alg": "EdDSA", "sealed_private_key": "sealed", "public_jwk": {"kid": f"k{n}"},
             "created_at": NOW + timedelta(seconds=n), "retired_at": None if n == 2 else NOW,
             "published_until": None} for n in range(3)]
    with runtime.database.unit_of_work() as uow:
        _session(uow).core_connection().execute(insert(SigningKeyRow.__table__), rows)
        found = hot_queries.run(uow.session, hot_queries.ACTIVE_SIGNING_KEY, alg="EdDSA")
        assert isinstance(found, PreparedResult)
        assert [row.kid for row in found] == ["k2"]
        assert found.first().public_jwk == {"kid": "k2"}
        # rolled back: the provider's own keys are untouched


def test_statement_listeners_still_see_every_statement(runtime: Runtime) -> None:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    engine = runtime.database.reading
    event.listen(engine, "before_cursor_execute", record)
    try:
        with runtime.database.unit_of_work(read_only=True) as uow:
            result = hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="none")
            assert result.first() is None
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert any("login_transactions" in statement for statement in seen)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()], ids=["sqlite", "postgresql"])
def test_every_prebuilt_statement_is_prepared_but_the_expanding_ones(dialect: Any) -> None:
    """A change to a statement that would quietly send it back through Core fails here."""
    fallback = set()
    for name in dir(hot_queries):
        statement = getattr(hot_queries, name)
        if not (name.isupper() and isinstance(statement, Executable)):
            continue
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        table = getattr(statement, "table", None)
        keys = (frozenset(table.columns.keys()) if getattr(statement, "is_insert", False)
                else frozenset(bind for bind in compiled.bind_names.values() if not bind.startswith("param_")))
        if prepared.prepare(statement, dialect, keys) is None:
            fallback.add(name)
    assert fallback == {"CONNECTIONS_WITH_STATUS", "DOMAINS_OF_CONNECTIONS"}


def test_an_expanding_list_a_python_default_or_a_text_goes_through_core() -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("name", String, default="x"))
    dialect = sqlite.dialect()
    listed = select(table).where(table.c.id.in_(bindparam("ids", expanding=True)))
    assert prepared.prepare(listed, dialect, frozenset({"ids"})) is None
    assert prepared.prepare(insert(table), dialect, frozenset({"id"})) is None  # ``name``'s default is Python's
    assert prepared.prepare(insert(table), dialect, frozenset({"id", "name"})) is not None
    assert prepared.prepare(text("SELECT id FROM t"), dialect, frozenset()) is None  # its columns are unknown



def test_a_writing_unit_of_prebuilt_statements_makes_no_connection(runtime: Runtime) -> None:
    """On SQLite and PostgreSQL alike, the statements run on the pooled driver connection, in the
    transaction the unit begins there, and commit or roll back with it."""
    made: list[object] = []

    def record(connection: object) -> None:
        made.append(connection)

    event.listen(runtime.database.engine, "engine_connect", record)
    try:
        with runtime.database.unit_of_work() as uow:
            hot_queries.run(uow.session, hot_queries.INSERT_LOGIN_TRANSACTION, **_transaction("tx-lane-kept"))
            uow.commit()
        with runtime.database.unit_of_work() as uow:
            hot_queries.run(uow.session, hot_queries.INSERT_LOGIN_TRANSACTION, **_transaction("tx-lane-dropped"))
            uow.rollback()
    finally:
        event.remove(runtime.database.engine, "engine_connect", record)
    assert made == []
    with runtime.database.unit_of_work(read_only=True) as uow:
        assert hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="tx-lane-kept").first()
        assert hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id="tx-lane-dropped").first() is None


def test_orm_work_after_prebuilt_statements_is_one_transaction(runtime: Runtime) -> None:
    def both(uow: SqlUnitOfWork, suffix: str) -> None:
        hot_queries.run(uow.session, hot_queries.INSERT_LOGIN_TRANSACTION, **_transaction(f"tx-first-{suffix}"))
        uow.session.execute(insert(LoginTransactionRow.__table__), _transaction(f"tx-orm-{suffix}"))  # the ORM's

    with runtime.database.unit_of_work() as uow:
        both(uow, "undone")
        uow.rollback()
    with runtime.database.unit_of_work() as uow:
        both(uow, "kept")
        uow.commit()
    with runtime.database.unit_of_work(read_only=True) as uow:
        found = {tx_id: hot_queries.run(uow.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id=tx_id).first() is not None
                 for tx_id in ("tx-first-undone", "tx-orm-undone", "tx-first-kept", "tx-orm-kept")}
    assert found == {"tx-first-undone": False, "tx-orm-undone": False, "tx-first-kept": True, "tx-orm-kept": True}
