"""Every query on the request path uses an index: ``EXPLAIN`` of each entry of
``keyhall.storage.hot_queries.HOT_QUERIES`` (the statements the repositories run) on a migrated
database, SQLite or PostgreSQL, must show no full table scan.

SQLite: ``EXPLAIN QUERY PLAN`` says ``SEARCH t USING ...`` for an index look-up and ``SCAN t`` for a
read of the whole table (or of a whole index). PostgreSQL: sequential scans are priced out for the
session (``enable_seqscan = off``), so a ``Seq Scan`` in the plan means no index could serve the
query, whatever the size of the (empty) tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Index, Select, text

from keyhall.storage import migrate
from keyhall.storage.engine import build_engine
from keyhall.storage.hot_queries import HOT_QUERIES, connection_ids_by_domain
from keyhall.storage.models import ConnectionDomainRow
from tests.support.database import fresh_database

_SQLITE_FULL_SCAN = re.compile(r"^SCAN (?!CONSTANT ROW)")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with fresh_database(tmp_path_factory.mktemp("plans")) as url:
        eng = build_engine(url)
        migrate.upgrade(eng)
        try:
            yield eng
        finally:
            eng.dispose()


def plan(connection: Connection, statement: Select[Any]) -> list[str]:
    """The plan, one line per step; on PostgreSQL, each index step says which column leads the index
    (``... [leading column: x]``), so that a walk over a whole index shows as one."""
    sql = str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    if connection.dialect.name == "sqlite":
        return [str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    leading = dict(connection.exec_driver_sql(
        "SELECT i.relname, a.attname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]").all())
    connection.execute(text("SET LOCAL enable_seqscan = off"))
    document = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}").scalar_one()
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        line = f"{'  ' * depth}{node['Node Type']} on {node.get('Relation Name', '-')}"
        if "Index Name" in node:
            line += (f" using {node['Index Name']} cond {node.get('Index Cond', '(none)')}"
                     f" [leading column: {leading.get(node['Index Name'])}]")
        lines.append(line)
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk((json.loads(document) if isinstance(document, str) else document)[0]["Plan"], 0)
    return lines


_PG_INDEX_STEP = re.compile(r"using \S+ cond (?P<cond>.*) \[leading column: (?P<column>\S+)\]$")


def full_scans(dialect: str, lines: list[str]) -> list[str]:
    """Steps that read a whole table or a whole index."""
    if dialect == "sqlite":
        return [line for line in lines if _SQLITE_FULL_SCAN.match(line)]
    found = []
    for line in lines:
        step = _PG_INDEX_STEP.search(line)
        if "Seq Scan" in line or (step and not re.search(rf"\b{re.escape(step['column'])}\b", step["cond"])):
            found.append(line)
    return found


@pytest.mark.parametrize("name", sorted(HOT_QUERIES))
def test_hot_query_uses_an_index(engine: Engine, name: str) -> None:
    with engine.connect() as connection:
        lines = plan(connection, HOT_QUERIES[name]())
        connection.rollback()
    assert lines, f"{name}: no plan"
    assert not full_scans(engine.dialect.name, lines), f"{name} reads a whole table:\n" + "\n".join(lines)


def test_the_check_sees_a_full_scan(engine: Engine) -> None:
    """Without the index that starts with connection_domains.domain, discovery by domain reads the
    whole table, and the check above says so (the index is dropped inside a transaction that is
    rolled back: DDL is transactional on both databases)."""
    index = next(i for i in ConnectionDomainRow.__table__.indexes
                 if isinstance(i, Index) and [c.name for c in i.columns] == ["domain"])
    with engine.connect() as connection:
        index.drop(connection)
        # Another literal than the listed query's: SQLite's statement cache would otherwise answer
        # with the plan it made before the index was dropped.
        lines = plan(connection, connection_ids_by_domain("example.net"))
        connection.rollback()
    assert full_scans(engine.dialect.name, lines), "\n".join(lines)
    with engine.connect() as connection:
        assert not full_scans(engine.dialect.name, plan(connection, connection_ids_by_domain("example.com")))


def test_the_issue_hot_lookups_are_listed() -> None:
    """The list covers the look-ups issue 11 names as hot (a renamed entry must stay covered)."""
    assert {"API key by id", "connection by id", "connections by domain", "domain claim by organization and domain",
            "user by connection and subject", "refresh token by hash", "token family by id",
            "login transaction by id", "authorization code by hash"} <= set(HOT_QUERIES)
