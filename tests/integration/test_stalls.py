"""A database, or Redis, that stops answering without closing anything, around a real ``keyhall serve``.

A stalled server (a failover in progress, a full disk, a lock pile-up) accepts TCP and answers
nothing; its kernel keeps acknowledging, so no TCP timer fires. The ``TcpProxy`` in front of
PostgreSQL (and Redis) plays it: ``cut("stall")`` keeps the open connections and drops what comes
in, and holds new ones unanswered. Keyhall must answer 503 in the API's error shape within
its bound (``KEYHALL_DATABASE_TIMEOUT_SECONDS``, here 2), say "not ready" within the readiness
deadline, keep answering ``/healthz``, lose nothing it acknowledged, and recover by itself.
"""

from __future__ import annotations

import statistics
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from keyhall.security.secrets import new_key
from tests.integration.test_faults import Installation, Timed, install, run_threads, timed
from tests.support.peers import free_port, peer_unavailable
from tests.support.servers import (
    KeyhallServer,
    TcpProxy,
    bearer,
    keyhall_cli,
    keyhall_env,
    postgres_database,
    query,
    wait_until,
)

# The same servers and databases whichever leg runs: `make test` runs it, `make test-postgres` not again.
pytestmark = pytest.mark.own_database

DATABASE_TIMEOUT = 2.0  # KEYHALL_DATABASE_TIMEOUT_SECONDS
READINESS_DEADLINE = 2.0  # api.health.READINESS_SECONDS (the database timeout, when shorter)
#: A request may wait for a pooled connection, then for the ping of a stalled one and a new
#: connection that is never answered, each bounded by the timeout (plus the client's margin).
API_BOUND = 3 * DATABASE_TIMEOUT + 3.0
LIVENESS_BOUND = READINESS_DEADLINE + 1.0  # generous: the point is that /healthz answers at all
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Liveness:
    """``/healthz`` polled every 50 ms from a thread; every answer's status and latency."""

    base_url: str
    answers: list[Timed] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Liveness:
        def run() -> None:
            with httpx.Client(base_url=self.base_url, trust_env=False, timeout=10) as client:
                while not self._stop.wait(0.05):
                    self.answers.append(timed(lambda: client.get("/healthz")))

        self._thread = threading.Thread(target=run, name="liveness", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=15)

    def check(self) -> str:
        assert len(self.answers) >= 10, self.answers
        failed = [a for a in self.answers if a.status != 200 or a.seconds > LIVENESS_BOUND]
        assert not failed, f"/healthz failed or stalled {len(failed)} of {len(self.answers)} times: {failed[:5]}"
        latencies = sorted(a.seconds * 1000 for a in self.answers)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return f"/healthz: {len(latencies)} answers, p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms"


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with postgres_database("keyhall_stall") as database, TcpProxy([("127.0.0.1", 5432)]) as db_proxy:
        running = install(tmp_path_factory.mktemp("stall"), database, db_proxy,
                          KEYHALL_DATABASE_TIMEOUT_SECONDS=str(DATABASE_TIMEOUT))
        try:
            yield running
        finally:
            db_proxy.restore()
            running.server.stop()


def create_key(api: httpx.Client, org_id: str, name: str) -> Timed:
    return timed(lambda: api.post(f"/v1/organizations/{org_id}/keys", json={"role": "viewer", "name": name}))


def test_stalled_database_is_503_within_the_bound_and_loses_nothing(installation: Installation) -> None:
    org = installation.org_id
    run = uuid.uuid4().hex[:6]
    acknowledged: list[str] = []
    refused: list[str] = []
    with installation.api() as api:
        for n in range(5):
            answer = create_key(api, org, f"before-{run}-{n}")
            assert answer.status == 201, answer
            acknowledged.append(f"before-{run}-{n}")
        assert api.get(f"/v1/organizations/{org}/connections").status_code == 200  # pooled connections exist

    with Liveness(installation.server.url) as liveness:
        installation.db_proxy.cut("stall")
        try:
            with installation.api() as api:
                ready = timed(lambda: api.get("/readyz"))
            answers: dict[int, tuple[str, Timed]] = {}

            def call(index: int) -> None:
                with installation.api() as api:
                    if index % 2:
                        name = f"during-{run}-{index}"
                        answers[index] = (name, create_key(api, org, name))
                    else:
                        answers[index] = ("", timed(lambda: api.get(f"/v1/organizations/{org}/connections")))

            run_threads(12, call, API_BOUND + 10)
            with installation.api() as api:
                still_down = timed(lambda: api.get("/readyz"))
        finally:
            installation.db_proxy.restore()

        with installation.api() as api:
            assert wait_until(lambda: api.get("/readyz").status_code == 200, timeout=API_BOUND), \
                "readiness did not come back after the database did"
            after = create_key(api, org, f"after-{run}")
            assert after.status == 201, after
            acknowledged.append(f"after-{run}")
    print(liveness.check())

    for what, answer in (("first /readyz", ready), ("second /readyz", still_down)):
        assert answer.status == 503, (what, answer)
        assert answer.seconds <= READINESS_DEADLINE + 1.0, (what, answer)
        assert "unreachable" in answer.body
    for name, answer in answers.values():
        assert answer.status == 503, answer
        assert answer.seconds <= API_BOUND, answer
        assert '"code":"unavailable"' in answer.body, answer
        if name:
            refused.append(name)
    assert refused

    stored = {name for (name,) in query(installation.database, "SELECT name FROM api_keys WHERE organization_id = %s",
                                        org)}
    assert set(acknowledged) <= stored, set(acknowledged) - stored
    assert not set(refused) & stored, "a write answered 503 was stored"
    assert installation.server.alive()


def test_a_statement_stuck_behind_a_lock_is_503_within_the_bound(installation: Installation) -> None:
    """The server answers, but a lock held elsewhere keeps the statement waiting: the server's own
    lock timeout ends it, and the connection stays usable."""
    from tests.support.servers import holding

    with installation.api() as api, holding(installation.database, "LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE"):
        answer = create_key(api, installation.org_id, f"locked-{uuid.uuid4().hex[:6]}")
    assert answer.status == 503, answer
    assert answer.seconds <= DATABASE_TIMEOUT + 2.0, answer
    with installation.api() as api:
        assert create_key(api, installation.org_id, f"unlocked-{uuid.uuid4().hex[:6]}").status == 201


# --- Redis ------------------------------------------------------------------------------------------


def test_stalled_redis_is_503_within_the_bound_and_recovers(tmp_path: Path) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        peer_unavailable(f"Redis at {REDIS_URL}: {exc}")
    with TcpProxy([("127.0.0.1", 6379)]) as redis_proxy:
        env = keyhall_env(tmp_path / "data", f"sqlite:///{tmp_path / 'keyhall.db'}", "http://127.0.0.1:1", new_key(),
                          KEYHALL_REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
                          KEYHALL_API_RATE_LIMIT_PER_MINUTE="100000")
        token = str(keyhall_cli(env, tmp_path, "key", "create", "--instance")["token"])
        server = KeyhallServer("keyhall-redis", free_port(), env, tmp_path).start()
        try:
            with server.client(headers=bearer(token), timeout=30) as api, Liveness(server.url) as liveness:
                assert api.get("/v1/organizations").status_code == 200
                redis_proxy.cut("stall")
                try:
                    stalled = [timed(lambda: api.get("/v1/organizations")) for _ in range(3)]
                finally:
                    redis_proxy.restore()
                assert wait_until(lambda: api.get("/v1/organizations").status_code == 200, timeout=10)
            print(liveness.check())
        finally:
            server.stop()
    for answer in stalled:
        assert answer.status == 503, answer
        assert answer.seconds <= 2.0 * 2 + 1.0, answer  # Redis socket timeouts: 2 s to connect, 2 s to answer
        assert "Redis" in answer.body, answer


# --- SQLite ----------------------------------------------------------------------------------------


def test_sqlite_busy_wait_is_bounded(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock: a write waits at most the database timeout, then
    503. A write whose key is refused waits for nothing: the key is read without the write lock
    (``api.deps.key_reads``), so it gets its 401 at once."""
    import sqlite3

    from fastapi.testclient import TestClient

    from keyhall.app import create_app
    from keyhall.runtime import Runtime
    from tests.support.api import Keyhall, auth
    from tests.support.settings import make_settings

    path = tmp_path / "busy.db"
    settings = make_settings(tmp_path / "data", f"sqlite:///{path}", database_timeout_seconds=1.0,
                             api_rate_limit_per_minute=0)
    runtime = Runtime.build(settings)
    runtime.database.migrate()
    try:
        with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
            tenant = Keyhall(client, runtime).tenant("busy")
            keys = f"/v1/organizations/{tenant.id}/keys"
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long write elsewhere holds it
            wrong_secret = tenant.owner[:-1] + ("A" if tenant.owner[-1] != "A" else "B")
            try:
                refused = timed(lambda: client.post(keys, json={"role": "viewer", "name": "refused"},
                                                    headers=auth(wrong_secret)))
                answer = timed(lambda: client.post(keys, json={"role": "viewer", "name": "busy"},
                                                   headers=auth(tenant.owner)))
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            after = client.post(keys, json={"role": "viewer", "name": "after"}, headers=auth(tenant.owner))
    finally:
        runtime.database.dispose()
    assert refused.status == 401, refused  # before: it waited for the lock to read the key, then 503
    assert answer.status == 503, answer
    assert 0.9 <= answer.seconds <= 1.0 + 2.0, answer  # it did wait, for the configured second only
    assert '"code":"unavailable"' in answer.body
    assert after.status_code == 201, after.text
