"""Faults around a real ``keyhall serve`` process: an IdP that never answers (or drips its answer),
an IdP that goes away in the middle of a sign-in, a database that is cut off or stops answering,
and ``kill -9`` in the middle of a burst of writes.

Keyhall reaches its PostgreSQL database (fresh per module, on 127.0.0.1:5432) through a
``TcpProxy`` the tests cut and restore; ``KEYHALL_IDP_TIMEOUT_SECONDS`` is 2, so every IdP fault
must end within a few seconds, while the server keeps answering everything else.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from keyhall.security.secrets import new_key
from tests.support.oidc_idp import OidcIdp
from tests.support.peers import free_port
from tests.support.servers import (
    KeyhallServer,
    TcpProxy,
    audit_events,
    authorize,
    bearer,
    database_url,
    keyhall_cli,
    keyhall_env,
    make_tenant,
    postgres_database,
    query,
    wait_until,
)

# The same servers and databases whichever leg runs: `make test` runs it, `make test-postgres` not again.
pytestmark = pytest.mark.own_database

IDP_TIMEOUT = 2.0  # KEYHALL_IDP_TIMEOUT_SECONDS
#: Keyhall's own bound on one IdP fetch is three timeouts (connect/read each, redirects included).
IDP_BOUND = 3 * IDP_TIMEOUT + 2.0
DATABASE_BOUND = 10.0  # seconds within which a request must answer while the database is down
PROMPT = 1.0  # seconds: what "still serving" means for a cheap request
CLIENT_TIMEOUT = 30.0


@dataclass
class Installation:
    """One Keyhall server whose database cable (``db_proxy``) the tests hold."""

    server: KeyhallServer
    db_proxy: TcpProxy
    database: str
    instance_token: str
    org_id: str
    owner: str

    def api(self) -> httpx.Client:
        return self.server.client(headers=bearer(self.owner), timeout=CLIENT_TIMEOUT)


def install(home: Path, database: str, db_proxy: TcpProxy, **extra_env: str) -> Installation:
    """A server on ``database`` through ``db_proxy``; ``extra_env`` adds or overrides settings
    (``KEYHALL_IDP_TIMEOUT_SECONDS`` is ``IDP_TIMEOUT`` unless given)."""
    settings = {"KEYHALL_IDP_TIMEOUT_SECONDS": str(IDP_TIMEOUT), "KEYHALL_API_RATE_LIMIT_PER_MINUTE": "0", **extra_env}
    env = keyhall_env(home / "data", database_url(database, port=db_proxy.port), "http://127.0.0.1:1", new_key(),
                      **settings)
    home.mkdir(parents=True, exist_ok=True)
    token = str(keyhall_cli(env, home, "key", "create", "--instance")["token"])
    port = free_port()
    env["KEYHALL_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    server = KeyhallServer("keyhall", port, env, home).start()
    return with_new_organization(Installation(server=server, db_proxy=db_proxy, database=database,
                                              instance_token=token, org_id="", owner=""))


def with_new_organization(installation: Installation) -> Installation:
    """The same server and database, seen through a new organization and its owner's key."""
    with installation.server.client(headers=bearer(installation.instance_token)) as api:
        org = api.post("/v1/organizations", json={"name": f"Faults {uuid.uuid4().hex[:6]}"})
        assert org.status_code == 201, org.text
        key = api.post(f"/v1/organizations/{org.json()['id']}/keys", json={"role": "owner"})
        assert key.status_code == 201, key.text
    return dataclasses.replace(installation, org_id=org.json()["id"], owner=key.json()["token"])


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with postgres_database("keyhall_faults") as database, TcpProxy([("127.0.0.1", 5432)]) as db_proxy:
        running = install(tmp_path_factory.mktemp("faults"), database, db_proxy)
        try:
            yield running
        finally:
            db_proxy.restore()
            running.server.stop()


@dataclass
class Timed:
    status: int | None
    seconds: float
    body: str = ""
    error: str | None = None


def timed(call: Callable[[], httpx.Response]) -> Timed:
    started = time.monotonic()
    try:
        response = call()
    except httpx.HTTPError as exc:
        return Timed(None, time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    return Timed(response.status_code, time.monotonic() - started, response.text)


@dataclass
class Prober:
    """Cheap requests sent one after another from a thread while something slow is under way."""

    base_url: str
    token: str
    paths: tuple[str, ...]
    results: list[tuple[str, Timed]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        def run() -> None:
            with httpx.Client(base_url=self.base_url, trust_env=False, timeout=CLIENT_TIMEOUT,
                              headers=bearer(self.token)) as client:
                while not self._stop.is_set():
                    for path in self.paths:
                        self.results.append((path, timed(functools.partial(client.get, path))))
                    time.sleep(0.05)

        self._thread = threading.Thread(target=run, name="prober", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=CLIENT_TIMEOUT + 5)

    def assert_prompt(self) -> None:
        assert self.results, "no probe ran"
        slow = [(path, r) for path, r in self.results if r.status != 200 or r.seconds > PROMPT]
        assert not slow, f"{len(slow)} of {len(self.results)} probes failed or were slow: {slow[:5]}"


def run_threads(count: int, target: Callable[[int], None], timeout: float) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a client thread is still waiting"


# --- the IdP ------------------------------------------------------------------------------------


def test_idp_that_never_answers_is_422_within_the_timeout_while_the_server_serves(installation: Installation) -> None:
    connections = f"/v1/organizations/{installation.org_id}/connections"
    with TcpProxy(mode="blackhole") as silent_idp, \
            Prober(installation.server.url, installation.owner, ("/healthz", "/readyz", connections)) as prober:
        answers: dict[int, Timed] = {}

        def create(index: int) -> None:
            with installation.api() as api:
                answers[index] = timed(lambda: api.post(connections, json={
                    "protocol": "oidc", "name": f"silent-{index}",
                    "oidc": {"issuer": silent_idp.url, "client_id": "c", "client_secret": "s"}}))

        run_threads(6, create, CLIENT_TIMEOUT + 5)
        assert silent_idp.accepted >= 6  # every creation did reach the IdP
    prober.assert_prompt()
    for answer in answers.values():
        assert answer.status == 422, answer
        assert answer.seconds <= IDP_BOUND, answer
        assert "timed out" in answer.body
        assert '"field":"oidc.issuer"' in answer.body
    with installation.api() as api:
        names = {c["name"] for c in api.get(connections, params={"limit": 200}).json()["data"]}
    assert not {n for n in names if n.startswith("silent-")}


class DrippingServer:
    """Accepts HTTP requests and answers one header byte at a time, each sooner than any read
    timeout, so that only an overall deadline ends the exchange."""

    def __init__(self, interval: float):
        self.interval = interval
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._clients.append(client)
            threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        try:
            client.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: yes\r\n" * 2000:
                if self._stop.wait(self.interval):
                    return
                client.sendall(bytes([byte]))
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for client in self._clients:
            client.close()

    def __enter__(self) -> DrippingServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def test_idp_that_drips_its_answer_is_cut_at_the_overall_deadline(installation: Installation) -> None:
    """Each byte comes within the read timeout; the whole answer never does. Keyhall's overall
    deadline for one fetch (three timeouts) must end it, in the headers as in the body."""
    connections = f"/v1/organizations/{installation.org_id}/connections"
    with DrippingServer(interval=IDP_TIMEOUT / 4) as dripping, installation.api() as api:
        answer = timed(lambda: api.post(connections, json={
            "protocol": "oidc", "name": "dripping", "oidc": {"issuer": dripping.url, "client_id": "c"}}))
    assert answer.status == 422, (f"creating a connection to an IdP that drips its headers did not end within "
                                  f"{CLIENT_TIMEOUT:g} s (Keyhall's own bound: {3 * IDP_TIMEOUT:g} s): {answer}")
    assert answer.seconds <= IDP_BOUND, answer


def test_idp_gone_during_the_sign_in_callback(installation: Installation, tmp_path: Path) -> None:
    """Two people are at the IdP when it goes away: the first comes back while nothing listens
    on its port, the second while something accepts and never answers. Both get a page that
    says what happened, within the bound, and the server serves everyone else meanwhile."""
    idp = OidcIdp.start()
    try:
        tenant = make_tenant(installation.server.url, installation.instance_token, idp.issuer, idp.register_client,
                             public_url=installation.server.url)
        browsers = [httpx.Client(trust_env=False, timeout=CLIENT_TIMEOUT) for _ in range(2)]
        callbacks = []
        for browser, login in zip(browsers, ("alice", "bob"), strict=True):
            started = authorize(browser, installation.server.url, tenant, login)
            callbacks.append(idp.scripted_login(started.idp_url, login))
    finally:
        idp.stop()
    try:
        refused = timed(lambda: browsers[0].get(callbacks[0]))
        probes = ("/healthz", f"/v1/organizations/{tenant.org_id}")
        with TcpProxy(port=idp.port, mode="blackhole") as silent_idp, \
                Prober(installation.server.url, tenant.owner, probes) as prober:
            hung = timed(lambda: browsers[1].get(callbacks[1]))
            assert silent_idp.accepted >= 1
        prober.assert_prompt()
    finally:
        for browser in browsers:
            browser.close()
    for answer, bound in ((refused, 2.0 + IDP_TIMEOUT), (hung, IDP_BOUND)):
        assert answer.status in (400, 502, 503, 504), answer
        assert answer.seconds <= bound, answer
        assert "We could not sign you in" in answer.body, answer.body[-700:]
        assert "your organization&#39;s identity provider" in answer.body, answer.body[-700:]
        assert "Traceback" not in answer.body
    events = audit_events(installation.server.url, tenant.org_id, tenant.owner, action="login.failed")
    assert [e["changes"]["reason"] for e in events] == ["idp_unreachable", "idp_unreachable"]
    assert all("token endpoint" in e["changes"]["detail"] for e in events), events
    assert not audit_events(installation.server.url, tenant.org_id, tenant.owner, action="login.succeeded")

    # No worker is left waiting on the IdP: a burst of requests is answered at once.
    results: dict[int, Timed] = {}

    def probe(index: int) -> None:
        results[index] = timed(lambda: httpx.get(f"{installation.server.url}/healthz", trust_env=False, timeout=10))

    run_threads(50, probe, 20)
    assert all(r.status == 200 and r.seconds < 5 for r in results.values()), results


# --- the database -------------------------------------------------------------------------------


def api_calls(installation: Installation) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    org = f"/v1/organizations/{installation.org_id}"
    return {
        "list connections": lambda api: api.get(f"{org}/connections"),
        "create connection": lambda api: api.post(f"{org}/connections", json={
            "protocol": "oidc", "name": "written-while-down",
            "oidc": {"issuer": "http://127.0.0.1:9", "client_id": "c"}}),
        "create key": lambda api: api.post(f"{org}/keys", json={"role": "viewer", "name": "written-while-down"}),
        "audit events": lambda api: api.get(f"{org}/audit-events"),
        "domains": lambda api: api.get(f"{org}/domains"),
        "jwks": lambda api: api.get("/oauth2/jwks"),
    }


def test_database_cut_off_answers_503_and_recovers_without_restart(installation: Installation) -> None:
    pid = installation.server.pid
    with installation.api() as api:
        assert api.get("/readyz").status_code == 200
        installation.db_proxy.cut("reject")
        try:
            ready = timed(lambda: api.get("/readyz"))
            assert ready.status == 503, ready
            assert ready.seconds <= DATABASE_BOUND, ready
            assert "unreachable" in ready.body
            for what, call in api_calls(installation).items():
                answer = timed(functools.partial(call, api))
                assert answer.status == 503, (what, answer)
                assert answer.seconds <= DATABASE_BOUND, (what, answer)
                assert '"code":"unavailable"' in answer.body, (what, answer)
            assert api.get("/healthz").status_code == 200  # alive, not ready: no restart wanted
        finally:
            installation.db_proxy.restore()
        assert wait_until(lambda: api.get("/readyz").status_code == 200, timeout=DATABASE_BOUND)
        keys = api.get(f"/v1/organizations/{installation.org_id}/keys", params={"limit": 200})
        assert keys.status_code == 200, keys.text
        assert "written-while-down" not in {k["name"] for k in keys.json()["data"]}
        created = api.post(f"/v1/organizations/{installation.org_id}/keys", json={"role": "viewer", "name": "after"})
        assert created.status_code == 201, created.text
    assert installation.server.pid == pid
    assert installation.server.alive()


def test_database_that_accepts_but_never_answers_is_503_within_a_bound(installation: Installation) -> None:
    """Open connections are reset and new ones are accepted and never answered, as a TCP load
    balancer in front of a dead database does. Without a connect timeout toward the database,
    every request would wait as long as the client does, holding a worker thread."""
    with installation.api() as api:
        assert api.get("/readyz").status_code == 200
        installation.db_proxy.cut("blackhole")
        try:
            ready = timed(lambda: api.get("/readyz"))
            listed = timed(lambda: api.get(f"/v1/organizations/{installation.org_id}/connections"))
        finally:
            installation.db_proxy.restore()
        for what, answer in (("/readyz", ready), ("GET connections", listed)):
            message = f"{what} with an unresponsive database: {answer} (the client waits {CLIENT_TIMEOUT:g} s)"
            assert answer.status == 503, message
            assert answer.seconds <= DATABASE_BOUND, message
        assert wait_until(lambda: api.get("/readyz").status_code == 200, timeout=DATABASE_BOUND)


# --- kill -9 ------------------------------------------------------------------------------------


@dataclass
class Attempt:
    name: str
    domains: list[str]
    request_id: str
    status: int | None = None
    connection_id: str | None = None


def test_kill_9_during_a_burst_of_writes_loses_no_acknowledged_write(installation: Installation,
                                                                       oidc_idp: OidcIdp) -> None:
    """The module's server, killed and restarted (the last test here): its writes go to an
    organization of their own, so what the other tests stored cannot hide or fake a lost write."""
    burst = with_new_organization(installation)
    attempts = burst_until_killed(burst, oidc_idp.issuer, writers=6, kill_after=20)
    burst.server.start()  # the same port, database and keys: a supervisor's restart
    check_nothing_lost_or_half_written(burst, attempts)


def burst_until_killed(installation: Installation, issuer: str, *, writers: int, kill_after: int) -> list[Attempt]:
    """``writers`` threads create connections (two domains each) until the server dies; it is sent
    SIGKILL once ``kill_after`` creations were acknowledged, with others in flight."""
    attempts: list[Attempt] = []
    lock = threading.Lock()
    acknowledged = threading.Event()
    gate = threading.Barrier(writers + 1)

    def writer(index: int) -> None:
        with installation.api() as api:
            gate.wait(timeout=10)
            for n in range(1000):
                attempt = Attempt(name=f"burst-{index}-{n}", domains=[f"b{index}-{n}-x.test", f"b{index}-{n}-y.test"],
                                  request_id=f"burst-{index}-{n}-{uuid.uuid4().hex[:8]}")
                with lock:
                    attempts.append(attempt)
                try:
                    response = api.post(f"/v1/organizations/{installation.org_id}/connections", json={
                        "protocol": "oidc", "name": attempt.name, "domains": attempt.domains,
                        "contacts": [f"it-{index}@example.com"],
                        "oidc": {"issuer": issuer, "client_id": f"client-{index}-{n}", "client_secret": "s"}},
                        headers={"X-Request-ID": attempt.request_id})
                except httpx.TransportError:
                    return  # the server is gone; whether this one was stored is unknown
                attempt.status = response.status_code
                if response.status_code == 201:
                    attempt.connection_id = response.json()["id"]
                    with lock:
                        if sum(a.status == 201 for a in attempts) >= kill_after:
                            acknowledged.set()
                else:
                    return

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    gate.wait(timeout=10)
    assert acknowledged.wait(timeout=60), "the burst did not get going"
    installation.server.kill()
    for thread in threads:
        thread.join(timeout=CLIENT_TIMEOUT + 5)
    unexpected = [a for a in attempts if a.status not in (None, 201)]
    assert not unexpected, unexpected
    return attempts


def check_nothing_lost_or_half_written(installation: Installation, attempts: list[Attempt]) -> None:
    acked = [a for a in attempts if a.status == 201]
    unknown = [a for a in attempts if a.status is None]
    assert len(acked) >= 20
    assert unknown, "no write was left unanswered by the kill"

    # Through the API of the restarted server: every acknowledged write, complete, with its audit event.
    created_events = {e["target_id"]: e for e in audit_events(
        installation.server.url, installation.org_id, installation.owner, action="connection.created")}
    with installation.api() as api:
        for attempt in acked:
            got = api.get(f"/v1/organizations/{installation.org_id}/connections/{attempt.connection_id}")
            assert got.status_code == 200, (attempt, got.text)
            assert got.json()["name"] == attempt.name
            assert sorted(got.json()["domains"]) == sorted(attempt.domains)
            assert got.json()["discovered"]["issuer"]
            event = created_events.get(attempt.connection_id)
            assert event is not None, attempt
            assert event["request_id"] == attempt.request_id, attempt

    # In the database: each connection row is whole (its domain rows, its claimed domains, its
    # audit event); the interrupted writes are there entirely or not at all.
    by_name = {a.name: a for a in attempts}
    database, org_id = installation.database, installation.org_id
    rows = {name: cid for cid, name in query(database, "SELECT id, name FROM connections WHERE organization_id = %s",
                                             org_id)}
    routed: dict[str, set[str]] = {}
    for cid, domain in query(database, "SELECT connection_id, domain FROM connection_domains "
                                       "WHERE organization_id = %s", org_id):
        routed.setdefault(cid, set()).add(domain)
    claimed = {name for (name,) in query(database, "SELECT name FROM domains WHERE organization_id = %s", org_id)}
    events = {}
    for target, request_id in query(database, "SELECT target_id, request_id FROM audit_events "
                                              "WHERE organization_id = %s AND action = 'connection.created'", org_id):
        assert target not in events, f"two creation events for {target}"
        events[target] = request_id
    assert set(rows) <= set(by_name), set(rows) - set(by_name)
    assert {a.name for a in acked} <= set(rows)
    for name, cid in rows.items():
        assert routed.get(cid) == set(by_name[name].domains), (name, routed.get(cid))
        assert set(by_name[name].domains) <= claimed, name
        assert events.get(cid) == by_name[name].request_id, name
    assert set(events) == set(rows.values()), "a creation event without its connection"
    stored_domains = {d for a in attempts if a.name in rows for d in a.domains}
    assert claimed == stored_domains, f"domains claimed by writes that were not stored: {claimed - stored_domains}"
