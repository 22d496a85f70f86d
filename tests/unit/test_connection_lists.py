"""The core's connection lists filter and page in the database: by cursor or by position, with a total.

The dialects page by number and filter by equality (Luzmo's ``find.where``, Logto's ``page``); these
are the core calls they translate to. Runs on SQLite, or PostgreSQL under ``KEYHALL_TEST_DATABASE_URL``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyhall.core import connection_service as service
from keyhall.core.access import Principal
from keyhall.core.connection_service import Context
from keyhall.core.connections import Connection
from keyhall.core.organizations import Organization
from keyhall.core.ports import ConnectionFilter
from keyhall.core.vocabulary import ConnectionStatus, Protocol, Provider, Role
from keyhall.security.secrets import SecretBox, new_key
from keyhall.storage.database import Database
from tests.support.database import fresh_database

START = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as url:
        db = Database(url, SecretBox([new_key()]))
        db.migrate()
        try:
            yield db
        finally:
            db.dispose()


def _connection(org: str, index: int, protocol: Protocol, **fields: object) -> Connection:
    conn = Connection(id=str(uuid.uuid4()), organization_id=org, protocol=protocol, provider=Provider.GENERIC,
                      name=f"c{index}",
                      created_at=START + timedelta(minutes=index), updated_at=START)
    return replace(conn, **fields)  # type: ignore[arg-type]


@pytest.fixture
def seeded(database: Database) -> tuple[Database, Context, list[Connection]]:
    """Two organizations; the first holds seven connections of mixed protocols and states."""
    orgs = [Organization(id=str(uuid.uuid4()), slug=f"org-{i}", name=f"Org {i}", short_id=f"s{i}",
                         created_at=START, updated_at=START) for i in range(2)]
    ours = [
        _connection(orgs[0].id, 0, Protocol.OIDC),
        _connection(orgs[0].id, 1, Protocol.SAML),
        _connection(orgs[0].id, 2, Protocol.OIDC, is_verified=True),
        _connection(orgs[0].id, 3, Protocol.LDAP),
        _connection(orgs[0].id, 4, Protocol.OIDC, disable_email_password=True, status=ConnectionStatus.INACTIVE),
        _connection(orgs[0].id, 5, Protocol.SAML, is_verified=True),
        _connection(orgs[0].id, 6, Protocol.OIDC, is_verified=True),
    ]
    with database.unit_of_work() as uow:
        for org in orgs:
            uow.organizations.add(org)
        uow.commit()
    with database.unit_of_work() as uow:
        for conn in [*ours, _connection(orgs[1].id, 0, Protocol.OIDC, is_verified=True)]:
            uow.connections.add(conn)
        uow.commit()
    ctx = Context(principal=Principal(key_id="k", organization_id=orgs[0].id, role=Role.OWNER), request_id=None,
                  now=START)
    return database, ctx, ours


def _names(items: list[Connection]) -> list[str]:
    return [c.name for c in items]


def test_a_slice_counts_every_match_and_returns_only_its_window(
    seeded: tuple[Database, Context, list[Connection]],
) -> None:
    database, ctx, _ = seeded
    oidc_saml = ConnectionFilter(protocols=("oidc", "saml"))
    with database.unit_of_work() as uow:
        org = str(ctx.principal.organization_id)
        everything = service.find_connections(uow, ctx, org, oidc_saml)
        window = service.find_connections(uow, ctx, org, oidc_saml, offset=2, limit=2)
        past_the_end = service.find_connections(uow, ctx, org, oidc_saml, offset=10, limit=5)
    assert (everything.total, _names(everything.items)) == (6, ["c0", "c1", "c2", "c4", "c5", "c6"])
    assert (window.total, _names(window.items)) == (6, ["c2", "c4"])
    assert (past_the_end.total, past_the_end.items) == (6, [])


def test_each_filter_field_narrows_by_equality(seeded: tuple[Database, Context, list[Connection]]) -> None:
    database, ctx, ours = seeded
    org = str(ctx.principal.organization_id)
    cases = {
        ConnectionFilter(protocols=("oidc",), is_verified=True): ["c2", "c6"],
        ConnectionFilter(is_verified=True): ["c2", "c5", "c6"],
        ConnectionFilter(disable_email_password=True): ["c4"],
        ConnectionFilter(status="inactive"): ["c4"],
        ConnectionFilter(name="c3"): ["c3"],
        ConnectionFilter(id=ours[5].id.upper()): ["c5"],  # ids compare without case
        ConnectionFilter(id="not-a-uuid"): [],
        ConnectionFilter(protocols=()): [],
    }
    with database.unit_of_work() as uow:
        for where, expected in cases.items():
            found = service.find_connections(uow, ctx, org, where)
            assert (_names(found.items), found.total) == (expected, len(expected)), where


def test_cursor_pages_follow_the_filter(seeded: tuple[Database, Context, list[Connection]]) -> None:
    database, ctx, _ = seeded
    org = str(ctx.principal.organization_id)
    seen: list[str] = []
    cursor: str | None = None
    with database.unit_of_work() as uow:
        while True:
            page = service.list_connections(uow, ctx, org, limit=2, cursor=cursor, protocol="oidc",
                                            where=ConnectionFilter(is_verified=True))
            seen += _names(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == ["c2", "c6"]
