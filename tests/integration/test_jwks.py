"""The JWKS endpoint, which every product fetches unauthenticated: one read that neither takes nor
waits for SQLite's write lock and never opens a sealed private key; the signing keys are made by the
first call on a new database, and a retired key stays published beside its successor."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.provider import signing
from keyhall.runtime import Runtime
from tests.integration.test_hot_path_statements import _counts, _work, statements
from tests.support.database import fresh_database
from tests.support.settings import make_settings


@pytest.fixture
def new_keyhall(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    """A Keyhall on a database of its own, with no signing key yet."""
    with fresh_database(tmp_path / "db") as url:
        runtime = Runtime.build(make_settings(tmp_path / "data", url))
        runtime.database.migrate()
        try:
            with TestClient(create_app(runtime.settings, runtime), raise_server_exceptions=False) as client:
                yield client, runtime
        finally:
            runtime.database.dispose()


def _published(client: TestClient) -> dict[str, str]:
    response = client.get("/oauth2/jwks")
    assert response.status_code == 200, response.text
    keys = response.json()["keys"]
    assert all(not {"d", "p", "q"} & set(key) for key in keys), "a private part was published"
    return {key["kid"]: key["alg"] for key in keys}


def test_the_first_call_on_a_new_database_makes_a_key_per_algorithm(
        new_keyhall: tuple[TestClient, Runtime]) -> None:
    client, runtime = new_keyhall
    with runtime.database.unit_of_work(read_only=True) as uow:
        assert uow.signing_keys.published(runtime.clock()) == []
    first = _published(client)
    assert sorted(first.values()) == sorted(signing.SUPPORTED_ALGS)
    assert _published(client) == first  # made once, then read


def test_the_jwks_is_one_read_without_the_write_lock_nor_a_private_key(
        new_keyhall: tuple[TestClient, Runtime]) -> None:
    client, runtime = new_keyhall
    _published(client)  # the first call makes the keys
    with statements(runtime) as seen:
        _published(client)
    work = _work(seen)
    assert len(work) == 1, work
    assert work[0].upper().startswith("SELECT"), work
    assert "sealed_private_key" not in work[0], work
    if runtime.database.backend == "sqlite":  # a deferred transaction; the write lock only for a counter
        begins = sorted(s for s in seen if s.upper().startswith("BEGIN"))
        assert begins == ["BEGIN"] + ["BEGIN IMMEDIATE"] * _counts(seen), seen


def test_a_retired_key_stays_published_beside_its_successor_until_its_tokens_expire(
        new_keyhall: tuple[TestClient, Runtime]) -> None:
    client, runtime = new_keyhall
    before = _published(client)
    now = runtime.clock()
    with runtime.database.unit_of_work() as uow:
        old = signing.active_key(uow.signing_keys, "ES256", now)
        uow.signing_keys.retire(old.kid, now, now + signing.MAX_TOKEN_LIFETIME)
        uow.commit()
    after = _published(client)  # ES256 has no active key: this call makes one, in a write
    assert old.kid in after
    assert set(before) < set(after)
    assert sorted(after.values()) == sorted([*signing.SUPPORTED_ALGS, "ES256"])
    with runtime.database.unit_of_work(read_only=True) as uow:
        published = uow.signing_keys.published(now)
        assert [key.kid for key in published if not key.active] == [old.kid]
        assert old.kid not in {key.kid for key in uow.signing_keys.published(now + timedelta(hours=2))}
