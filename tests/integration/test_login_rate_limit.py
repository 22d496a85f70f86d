"""Sign-in endpoints are throttled per client address and endpoint (KEYHALL_LOGIN_RATE_LIMIT_PER_MINUTE)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.runtime import Runtime
from tests.support.settings import make_settings


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    runtime = Runtime.build(make_settings(tmp_path, database_url, login_rate_limit_per_minute=3))
    runtime.database.migrate()
    stopped = runtime.clock()
    runtime.clock = lambda: stopped  # every call below falls in one window: a minute's end cannot reset it
    # An address of its own: the session's database holds every other test's counters too.
    address = f"198.51.100.{secrets.randbelow(254) + 1}"
    with TestClient(create_app(runtime.settings, runtime), raise_server_exceptions=False,
                    client=(address, 50000)) as test_client:
        yield test_client
    runtime.database.dispose()


def test_each_sign_in_endpoint_has_its_own_budget_per_address(client: TestClient) -> None:
    answers = [client.get("/.well-known/openid-configuration").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    limited = client.get("/.well-known/openid-configuration")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another endpoint is counted apart; the management API is not a sign-in endpoint at all.
    assert client.get("/login").status_code != 429
    assert [client.post("/oauth2/token", data={"grant_type": "x"}).status_code for _ in range(4)] == [
        401, 401, 401, 429]
    assert client.get("/healthz").status_code == 200
