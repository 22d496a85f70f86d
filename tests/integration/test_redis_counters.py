"""Rate-limit counters in a real Redis (127.0.0.1:6379), shared by two Keyhall apps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.runtime import Runtime, utcnow
from keyhall.security.redis_counters import RedisCounterStore
from tests.support.api import Keyhall, auth
from tests.support.peers import peer_unavailable
from tests.support.settings import make_settings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        peer_unavailable(f"Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


def test_counts_are_shared_and_expire(redis_url: str) -> None:
    store = RedisCounterStore(redis_url, prefix=f"keyhall-test:{uuid.uuid4().hex}:")
    other = RedisCounterStore(redis_url, prefix=store.prefix)
    try:
        assert [store.increment("k", 600, 60) for _ in range(3)] == [1, 2, 3]
        assert other.increment("k", 600, 60) == 4  # a second instance sees the same counter
        assert store.increment("k", 660, 60) == 1  # a new window starts from zero
        assert 0 < store.client.ttl(f"{store.prefix}k:600") <= 65
    finally:
        store.close()
        other.close()


@pytest.fixture
def two_apps(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[tuple[Keyhall, Keyhall]]:
    apps = []
    clients = []
    stopped = utcnow()  # both instances count in one window: a minute's end cannot reset it
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, database_url, redis_url=redis_url, api_rate_limit_per_minute=4)
        runtime = Runtime.build(settings)
        runtime.database.migrate()
        runtime.clock = lambda: stopped
        client = TestClient(create_app(settings, runtime), raise_server_exceptions=False)
        clients.append(client.__enter__())
        apps.append(Keyhall(client, runtime))
    try:
        yield apps[0], apps[1]
    finally:
        for client in clients:
            client.__exit__(None, None, None)
        for app in apps:
            app.runtime.database.dispose()


def test_two_instances_share_one_budget_through_redis(two_apps: tuple[Keyhall, Keyhall]) -> None:
    a, b = two_apps
    tenant = a.tenant("Redis Budget")
    url = f"/v1/organizations/{tenant.slug}"
    answers = [(a if i % 2 == 0 else b).client.get(url, headers=auth(tenant.viewer)).status_code for i in range(6)]
    assert answers[:4] == [200, 200, 200, 200]
    assert answers[4:] == [429, 429]
