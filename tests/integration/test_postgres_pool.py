"""The PostgreSQL pool's liveness check (``storage.postgres.check_liveness``), against a real server.

A connection returned to the pool a moment ago goes out again without a ping (a round trip saved
per request under load); one left idle past the window is pinged first, and when the server has
dropped it meanwhile, the caller gets a fresh connection, not an error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from keyhall.security.secrets import SecretBox, new_key
from keyhall.storage import postgres
from keyhall.storage.database import Database
from keyhall.storage.engine import build_engine
from tests.support.servers import database_url, postgres_database, query

pytestmark = pytest.mark.own_database  # a database of its own on the local server, whichever leg runs


@pytest.fixture
def engine() -> Iterator[Engine]:
    with postgres_database("keyhall_pool") as name:
        built = build_engine(database_url(name), timeout=2.0)
        try:
            yield built
        finally:
            built.dispose()


def count_pings(engine: Engine) -> list[int]:
    pings = [0]
    original = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return bool(original(dbapi_connection))

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def age_pooled_connections(engine: Engine, seconds: float) -> None:
    """Make every connection in the pool look returned ``seconds`` ago (instead of sleeping)."""
    for record in list(engine.pool._pool.queue):  # type: ignore[attr-defined]
        record.info[postgres._LAST_USED] -= seconds


def test_a_connection_just_returned_is_reused_without_a_ping(engine: Engine) -> None:
    pings = count_pings(engine)
    first = backend_pid(engine)  # a new connection: no ping either
    for _ in range(20):
        assert backend_pid(engine) == first  # the same pooled connection each time
    assert pings[0] == 0


def test_an_idle_connection_is_pinged_before_it_is_handed_out(engine: Engine) -> None:
    pings = count_pings(engine)
    first = backend_pid(engine)
    age_pooled_connections(engine, postgres.ALIVE_BYPASS_SECONDS + 1)
    assert backend_pid(engine) == first  # alive: the ping passed and the connection is reused
    assert pings[0] == 1


def test_an_idle_connection_the_server_dropped_is_replaced_not_an_error(engine: Engine) -> None:
    database = engine.url.database
    assert database
    first = backend_pid(engine)
    terminated = query("postgres", "SELECT pg_terminate_backend(%s)", first)
    assert terminated == [(True,)]
    time.sleep(0.2)  # the backend's exit reaches the socket
    age_pooled_connections(engine, postgres.ALIVE_BYPASS_SECONDS + 1)
    second = backend_pid(engine)
    assert second != first


def test_a_read_only_unit_of_work_hands_its_connection_back_when_its_reads_end() -> None:
    """``api.deps.run_reads`` ends a read-only unit inside its one thread hand-off, so the request's
    end needs no hand-off (nor round trip) of its own; a writing unit is left alone."""
    with postgres_database("keyhall_pool") as name:
        database = Database(database_url(name), SecretBox([new_key()]), timeout=2.0)
        try:
            pool: Any = database.engine.pool
            reads = database.unit_of_work(read_only=True)
            reads.session.execute(text("SELECT 1"))
            assert pool.checkedout() == 1
            database.end_reads(reads)
            assert pool.checkedout() == 0
            assert database.ends_at_once(reads)  # nothing left for a thread at the request's end

            writes = database.unit_of_work()
            writes.session.execute(text("SELECT 1"))
            database.end_reads(writes)
            assert writes.session.in_transaction()
            assert pool.checkedout() == 1
            writes.close()
        finally:
            database.dispose()


def test_a_read_only_unit_reads_without_a_transaction_and_gives_the_connection_back_transactional() -> None:
    """At READ COMMITTED a read-only unit runs in autocommit (no BEGIN, no ROLLBACK round trips); the
    same pooled connection then serves a writing unit inside a transaction again, which a failure
    rolls back whole."""
    with postgres_database("keyhall_pool") as name:
        database = Database(database_url(name), SecretBox([new_key()]), timeout=2.0)
        try:
            database.migrate()
            pool: Any = database.engine.pool
            with database.unit_of_work(read_only=True) as reads:
                assert reads.organizations.get("00000000-0000-4000-8000-000000000000") is None
                raw: Any = reads.session.core_connection().connection.dbapi_connection  # type: ignore[attr-defined]
                assert raw.autocommit
                assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # no transaction open
            assert pool.checkedout() == 0
            assert pool.checkedin() == 1  # the one connection, back in the pool
            with database.unit_of_work() as writes:
                writes.session.execute(text(
                    "INSERT INTO organizations (id, slug, name, admins_may_configure_sso, short_id, created_at, "
                    "updated_at) VALUES ('11111111-1111-4111-8111-111111111111', 'pool-test', 'Pool', false, "
                    "'pooltest', now(), now())"))
                raw = writes.session.connection().connection.dbapi_connection
                assert raw.autocommit is False
                assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
                writes.rollback()
            assert pool.checkedin() == 1  # the same connection served both
            assert query(name, "SELECT count(*) FROM organizations WHERE slug = 'pool-test'") == [(0,)]
        finally:
            database.dispose()
