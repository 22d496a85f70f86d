"""Revision 20261206_0009 on a database that already holds refresh tokens: every family gets its row,
started when its first token was issued, so sign-ins made before the upgrade keep refreshing (within
the absolute lifetime counted from the original sign-in) and revoked ones stay revoked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from keyhall.storage import migrate
from keyhall.storage.engine import build_engine
from keyhall.storage.models import RefreshTokenRow, TokenFamilyRow
from tests.support.database import fresh_database

BEFORE, REVISION = "20261123_0007", "20261206_0009"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with fresh_database(tmp_path) as url:
        eng = build_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


def test_existing_refresh_tokens_get_their_families(engine: Engine) -> None:
    migrate.upgrade(engine, BEFORE)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    grant = {"scope": "openid", "connection_id": "c0nnect1-0000-4000-8000-000000000000", "amr": ["ext"]}
    rows = [
        # A live lineage: two rotated tokens and the newest, unused one.
        ("live-1", "fam-live", start, start + timedelta(days=1), None),
        ("live-2", "fam-live", start + timedelta(days=1), start + timedelta(days=2), None),
        ("live-3", "fam-live", start + timedelta(days=2), None, None),
        # A revoked lineage (a reused token ended it).
        ("dead-1", "fam-dead", start, start + timedelta(hours=1), start + timedelta(hours=2)),
        ("dead-2", "fam-dead", start + timedelta(hours=1), None, start + timedelta(hours=2)),
    ]
    with engine.begin() as connection:
        for token_hash, family, created, used, revoked in rows:
            connection.execute(insert(RefreshTokenRow.__table__).values(
                token_hash=token_hash, family_id=family, client_id="app_1", user_id="user-1",
                grant=grant if family == "fam-live" else {"scope": "openid", "amr": ["pwd"]},
                created_at=created, expires_at=created + timedelta(days=30), used_at=used, revoked_at=revoked))

    migrate.upgrade(engine, REVISION)

    with engine.connect() as connection:
        families = {row.id: row for row in connection.execute(select(TokenFamilyRow.__table__))}
    assert set(families) == {"fam-live", "fam-dead"}
    live, dead = families["fam-live"], families["fam-dead"]
    assert (live.client_id, live.user_id, live.connection_id, live.amr) == (
        "app_1", "user-1", grant["connection_id"], ["ext"])
    assert live.created_at == start
    assert live.revoked_at is None
    assert (dead.connection_id, dead.amr) == (None, ["pwd"])
    assert dead.revoked_at == start + timedelta(hours=2)

    migrate.downgrade(engine, BEFORE)
    migrate.upgrade(engine, REVISION)  # and back again, from the tokens alone
