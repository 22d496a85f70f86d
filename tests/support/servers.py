"""Several real ``keyhall serve`` processes on one PostgreSQL database, and the TCP plumbing
around them that the multi-instance, fault and load tests control.

- ``postgres_database()``: a new PostgreSQL database on ``POSTGRES_ADMIN_URL`` (the server on
  127.0.0.1:5432, independent of ``KEYHALL_TEST_DATABASE_URL``), dropped afterwards; an unreachable
  server goes through ``peer_unavailable`` (a failure in CI, a skip elsewhere).
- ``TcpProxy``: a threaded TCP forwarder on 127.0.0.1. With several backends it is a round-robin
  load balancer (one backend per accepted connection); in front of PostgreSQL it is the cable a
  test can cut. ``cut("reject")`` resets every open connection and refuses new ones,
  ``cut("blackhole")`` resets the open ones and accepts new ones that are never answered (a
  load balancer whose backend is gone); ``cut("stall")`` keeps every open connection and reads
  what comes in but forwards nothing either way, and holds new ones unanswered (a database that
  froze: its kernel still acknowledges, so no TCP timer fires); ``restore()`` forwards again. Without backends and in
  ``blackhole`` mode it is an IdP that accepts and never answers.
- ``KeyhallServer``: ``python -m keyhall serve`` in its own process, started, stopped (SIGTERM,
  then SIGKILL), killed (SIGKILL) and restarted on the same port, by its PID.
- ``keyhall_cluster()``: N servers on one database, sharing ``KEYHALL_SECRET_KEYS`` and one public
  URL, that of a round-robin ``TcpProxy`` in front of them (the issuer of every token).
- ``query()`` reads the database directly; ``holding()`` keeps a lock in an open transaction so
  that Keyhall's sessions queue up behind it and are released together (a race made certain).
- ``make_tenant()``, ``authorize()``, ``product_code()``, ``token_request()``, ``audit_events()``:
  an organization, a product and a sign-in, driven over HTTP against any of the servers.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from keyhall.security.secrets import new_key
from tests.support.peers import free_port, peer_unavailable

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_TIMEOUT = 30.0  # seconds for a server to answer /healthz

Mode = Literal["forward", "reject", "blackhole", "stall"]


class ServerError(AssertionError):
    """A Keyhall process did not start, or exited; the message carries its log's tail."""


# --- PostgreSQL -------------------------------------------------------------------------------


def database_url(name: str, *, host: str = "127.0.0.1", port: int = 5432) -> str:
    """The URL Keyhall is given for database ``name`` (possibly reached through a proxy's port)."""
    return f"postgresql://postgres@{host}:{port}/{name}"


@contextlib.contextmanager
def postgres_database(prefix: str = "keyhall_mi") -> Iterator[str]:
    """Create an empty database on the local PostgreSQL server; yield its name; drop it (FORCE)."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        peer_unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {exc}")
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def query(database: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one SQL statement run directly on ``database`` (bypassing Keyhall)."""
    import psycopg

    with psycopg.connect(database_url(database), connect_timeout=5) as conn:
        return list(conn.execute(statement, params).fetchall())


@contextlib.contextmanager
def holding(database: str, statement: str) -> Iterator[Callable[[int, float], int]]:
    """Run ``statement`` (``LOCK TABLE ...``, an uncommitted ``CREATE TABLE ...``) in a transaction
    left open on ``database``, so that Keyhall's sessions that need the same lock queue up behind
    it; roll it back on exit, releasing them all at once. Yields ``waiters(n, timeout)``: waits
    until ``n`` other sessions are waiting for a lock (or ``timeout`` seconds pass) and says how many are."""
    import psycopg

    with psycopg.connect(database_url(database), connect_timeout=5) as conn:
        conn.execute(statement)

        def waiters(n: int, timeout: float) -> int:
            deadline = time.monotonic() + timeout
            with psycopg.connect(database_url(database), connect_timeout=5, autocommit=True) as probe:
                while True:
                    row = probe.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                        "AND wait_event_type = 'Lock'", (database,)).fetchone()
                    count = int(row[0]) if row else 0
                    if count >= n or time.monotonic() > deadline:
                        return count
                    time.sleep(0.05)

        try:
            yield waiters
        finally:
            conn.rollback()


# --- TCP proxy --------------------------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), waking any thread blocked on the socket first."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket
    backend: int
    open_directions: int = 2
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        _reset(self.client)
        _reset(self.upstream)


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 (round-robin over ``backends``, one per accepted connection)."""

    def __init__(self, backends: Sequence[tuple[str, int]] = (), *, port: int = 0, mode: Mode = "forward"):
        self._listener = socket.create_server(("127.0.0.1", port), backlog=256)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._backends = list(backends)
        self._mode: Mode = mode
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._held: list[socket.socket] = []
        self._turn = itertools.count()
        self._closing = threading.Event()
        self.routed: Counter[int] = Counter()  # accepted connections per backend index
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_backends(self, backends: Sequence[tuple[str, int]]) -> None:
        with self._lock:
            self._backends = list(backends)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs) + len(self._held)

    def cut(self, mode: Literal["reject", "blackhole", "stall"] = "reject") -> None:
        """Reset every open connection; from now on refuse (``reject``) or hold unanswered (``blackhole``).
        ``stall`` keeps the open connections, silent: what their clients send is read and dropped."""
        with self._lock:
            self._mode = mode
            if mode == "stall":
                return
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.close()

    def restore(self) -> None:
        """Forward again; connections held by a blackhole, or stalled (whose bytes were dropped), are
        reset (their clients reconnect)."""
        with self._lock:
            stalled = self._mode == "stall"
            self._mode = "forward"
            held, self._held = self._held, []
            pairs: list[_Pair] = []
            if stalled:
                pairs, self._pairs = list(self._pairs), set()
        for sock in held:
            _reset(sock)
        for pair in pairs:
            pair.close()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
            held, self._held = self._held, []
        for pair in pairs:
            pair.close()
        for sock in held:
            _reset(sock)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.accepted += 1
                if self._mode in ("blackhole", "stall"):
                    self._held.append(client)
                    continue
                backends = list(self._backends)
                index: int | None = None
                if self._mode == "forward" and backends:
                    index = next(self._turn) % len(backends)
                    self.routed[index] += 1
            if index is None:
                _reset(client)
                continue
            threading.Thread(target=self._connect, args=(client, index, backends[index]), daemon=True).start()

    def _connect(self, client: socket.socket, index: int, backend: tuple[str, int]) -> None:
        try:
            upstream = socket.create_connection(backend, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client=client, upstream=upstream, backend=index)
        with self._lock:
            if self._mode != "forward" or self._closing.is_set():
                pair.close()
                return
            self._pairs.add(pair)
        threading.Thread(target=self._pump, args=(pair, client, upstream), daemon=True).start()
        threading.Thread(target=self._pump, args=(pair, upstream, client), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self._mode != "stall":  # stalled: the bytes are acknowledged, and go nowhere
                    target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with pair.lock:
            pair.open_directions -= 1
            finished = pair.open_directions == 0
        if finished:
            with self._lock:
                self._pairs.discard(pair)
            pair.close()


# --- Keyhall processes ------------------------------------------------------------------------


def keyhall_env(data_dir: Path, database: str, public_url: str, secret_keys: str,
                **extra: str) -> dict[str, str]:
    """The environment of one Keyhall process: nothing ``KEYHALL_*`` leaks in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
    env.update({
        "KEYHALL_DATA_DIR": str(data_dir),
        "KEYHALL_DATABASE_URL": database,
        "KEYHALL_PUBLIC_URL": public_url,
        "KEYHALL_SECRET_KEYS": secret_keys,
        "KEYHALL_ALLOW_INSECURE_IDP_URLS": "1",  # the test IdPs are http on loopback
        "KEYHALL_ALLOW_UNVERIFIED_DOMAINS": "1",  # route the tests' email domains without DNS proof
        "KEYHALL_DOMAIN_CHECK_INTERVAL_SECONDS": "0",
        "KEYHALL_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def keyhall_cli(env: Mapping[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    """``keyhall ARGS`` (migrating first, as every command does) with the environment ``env`` and the
    working directory ``cwd``; its JSON output. Run in this process through click's runner: the same
    command as ``python -m keyhall``, without a new interpreter importing Keyhall again for a set-up
    step (tests/integration/test_cli.py runs the command as a real process)."""
    from click.testing import CliRunner  # test tooling, needed only by the tests that run a command

    from keyhall.cli import main

    # Only ``env``: a KEYHALL_* variable of this process is unset for the command, as keyhall_env() leaves it out.
    overlay: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KEYHALL_")}
    overlay.update({k: v for k, v in env.items() if k.startswith("KEYHALL_")})
    with contextlib.chdir(cwd):  # no stray .env file of the caller's directory is read
        done = CliRunner().invoke(main, list(args), env=overlay, catch_exceptions=True)
    if done.exit_code != 0:
        raise ServerError(f"keyhall {' '.join(args)} failed ({done.exit_code}):\n{done.stderr[-3000:]}\n"
                          f"{done.exception!r}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class KeyhallServer:
    """``python -m keyhall serve`` on 127.0.0.1:``port`` in its own process; its output goes to ``log_path``."""

    def __init__(self, name: str, port: int, env: Mapping[str, str], workdir: Path):
        self.name = name
        self.port = port
        self.env = dict(env)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, wait: bool = True) -> KeyhallServer:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "keyhall", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_healthy()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until ``/healthz`` answers 200; ServerError (with the log) if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, trust_env=False, timeout=1.0) as client:
            while True:
                if not self.alive():
                    code = self.process.returncode if self.process else None
                    raise ServerError(f"{self.name} exited with status {code}:\n{self.log()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ServerError(f"{self.name} did not answer /healthz within {timeout:g} s:\n"
                                      f"{self.log()[-3000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL after ten seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL by PID (``kill -9``): no clean-up runs in the server."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=kwargs.pop("timeout", 15.0), **kwargs)


@dataclass
class Cluster:
    """Keyhall servers on one database behind a round-robin proxy whose URL is the public URL."""

    database: str  # the database's name on the local PostgreSQL server
    proxy: TcpProxy
    servers: list[KeyhallServer]
    instance_token: str
    workdir: Path

    @property
    def public_url(self) -> str:
        return self.proxy.url

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log()[-3000:]}" for s in self.servers)


@contextlib.contextmanager
def keyhall_cluster(workdir: Path, database: str, *, instances: int = 2, **extra_env: str) -> Iterator[Cluster]:
    """``instances`` servers on ``database`` with one secret key set and one public URL (the proxy's).

    The schema is migrated (and the instance-admin key made) by the CLI before the servers start.
    Each server has its own data directory, so nothing is shared through files.
    """
    proxy = TcpProxy()
    servers: list[KeyhallServer] = []
    try:
        secret_keys = new_key()
        url = database_url(database)
        cli_env = keyhall_env(workdir / "cli" / "data", url, proxy.url, secret_keys, **extra_env)
        (workdir / "cli").mkdir(parents=True, exist_ok=True)
        token = str(keyhall_cli(cli_env, workdir / "cli", "key", "create", "--instance")["token"])
        for index in range(instances):
            name = "abcdefgh"[index] if index < 8 else f"k{index}"
            home = workdir / f"keyhall-{name}"
            env = keyhall_env(home / "data", url, proxy.url, secret_keys, **extra_env)
            servers.append(KeyhallServer(f"keyhall-{name}", free_port(), env, home))
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_healthy()
        proxy.set_backends([("127.0.0.1", s.port) for s in servers])
        yield Cluster(database=database, proxy=proxy, servers=servers, instance_token=token, workdir=workdir)
    finally:
        for server in servers:
            server.stop()
        proxy.close()


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate()`` until it is truthy or ``timeout`` seconds pass; whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)



# --- driving them over HTTP: a tenant, a product, a sign-in ---------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Tenant:
    """An organization with an owner key, one OIDC connection to a real IdP, and a product application."""

    org_id: str
    owner: str
    connection: dict[str, Any]
    domain: str
    client_id: str
    client_secret: str
    redirect_uri: str


def make_tenant(base_url: str, instance_token: str, idp_issuer: str, register_client: Callable[[list[str]], Any],
                *, public_url: str) -> Tenant:
    """Made over ``base_url``'s API: ``register_client(redirect_uris)`` registers Keyhall at the IdP
    (e.g. ``OidcIdp.register_client``) and returns ``(client_id, client_secret)``."""
    suffix = uuid.uuid4().hex[:8]
    domain = f"multi-{suffix}.test"
    with httpx.Client(base_url=base_url, trust_env=False, timeout=15.0) as api:
        org = api.post("/v1/organizations", json={"name": f"Tenant {suffix}"}, headers=bearer(instance_token))
        assert org.status_code == 201, org.text
        org_id = org.json()["id"]
        key = api.post(f"/v1/organizations/{org_id}/keys", json={"role": "owner"}, headers=bearer(instance_token))
        assert key.status_code == 201, key.text
        owner = key.json()["token"]
        created = api.post(f"/v1/organizations/{org_id}/connections", headers=bearer(owner), json={
            "protocol": "oidc", "name": "corp", "domains": [domain],
            "oidc": {"issuer": idp_issuer, "client_id": "pending", "scope": "openid profile email groups"}})
        assert created.status_code == 201, created.text
        conn = created.json()
        assert conn["redirect_uri"] == f"{public_url}/sso/{conn['id']}/oidc/callback"
        client_id, client_secret = register_client([conn["redirect_uri"]])
        patched = api.patch(f"/v1/organizations/{org_id}/connections/{conn['id']}", headers=bearer(owner),
                            json={"oidc": {"client_id": client_id, "client_secret": client_secret}})
        assert patched.status_code == 200, patched.text
        redirect_uri = f"http://127.0.0.1:{free_port()}/product/callback"  # never requested
        app = api.post("/v1/applications", headers=bearer(instance_token),
                       json={"name": f"Product {suffix}", "redirect_uris": [redirect_uri]})
        assert app.status_code == 201, app.text
    return Tenant(org_id=org_id, owner=owner, connection=patched.json(), domain=domain,
                  client_id=app.json()["client_id"], client_secret=app.json()["client_secret"],
                  redirect_uri=redirect_uri)


@dataclass(frozen=True)
class Authorization:
    """A sign-in the product started: where Keyhall sent the browser, and what the product keeps."""

    idp_url: str
    state: str
    nonce: str
    verifier: str


def authorize(browser: httpx.Client, base_url: str, tenant: Tenant, login: str,
              scope: str = "openid email profile groups offline_access") -> Authorization:
    """The product sends the browser to ``base_url``'s ``/oauth2/authorize`` (PKCE, ``login_hint``); 303 to the IdP."""
    verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": tenant.client_id, "redirect_uri": tenant.redirect_uri,
                       "scope": scope, "state": state, "nonce": nonce, "login_hint": f"{login}@{tenant.domain}",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    response = browser.get(f"{base_url}/oauth2/authorize?{query}")
    assert response.status_code == 303, response.text
    return Authorization(idp_url=response.headers["location"], state=state, nonce=nonce, verifier=verifier)


def product_code(response: httpx.Response, tenant: Tenant, started: Authorization, issuer: str) -> str:
    """The code in Keyhall's redirect to the product, checked against the request that started it."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(tenant.redirect_uri), location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [started.state]
    assert query["iss"] == [issuer]
    return query["code"][0]


def token_request(base_url: str, tenant: Tenant, form: dict[str, str]) -> httpx.Response:
    """The product's back channel: ``/oauth2/token`` with client_secret_basic."""
    return httpx.post(f"{base_url}/oauth2/token", data=form, auth=(tenant.client_id, tenant.client_secret),
                      trust_env=False, timeout=15)


def audit_events(base_url: str, org_id: str, token: str, **filters: str) -> list[dict[str, Any]]:
    """Every audit event of the organization matching ``filters`` (``action``, ``target_id``), all pages."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(base_url=base_url, trust_env=False, timeout=15.0, headers=bearer(token)) as api:
        while True:
            params: dict[str, Any] = {**filters, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = api.get(f"/v1/organizations/{org_id}/audit-events", params=params)
            assert page.status_code == 200, page.text
            events.extend(page.json()["data"])
            cursor = page.json()["next_cursor"]
            if not cursor:
                return events
