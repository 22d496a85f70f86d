"""Login benchmark: complete OIDC sign-ins through a real Keyhall and a real IdP, all on 127.0.0.1.

One command::

    .venv/bin/python -m bench.login --logins 200 --concurrency 4
    .venv/bin/python -m bench.login --database-url postgresql://postgres@127.0.0.1:5432/postgres

It starts the npm ``oidc-provider`` (``tests/peers/oidc_provider``, after ``npm ci`` there) and a
Keyhall server (``python -m keyhall serve`` in its own process, so that the load generator's
threads do not share the server's interpreter lock) on a fresh database: a SQLite file in a
temporary directory, or a PostgreSQL database created on the server named by ``--database-url``
and dropped afterwards. It then makes, over the HTTP API, an organization, an OIDC connection to
the IdP and a product application, and drives complete sign-ins, each as a fresh browser (cookies
cleared, one ``httpx.Client`` per simulated browser thread):

1. ``authorize``: the product sends the browser to Keyhall ``/oauth2/authorize`` (with a
   ``login_hint``); Keyhall routes by email domain and answers 303 to the IdP.
2. ``idp``: the browser signs in at the IdP (devInteractions login, then consent), until the
   IdP redirects back to Keyhall. This is the IdP's cost, not Keyhall's.
3. ``callback``: Keyhall's ``/sso/{id}/oidc/callback``: code exchange with the IdP, ID token
   validation, userinfo, provisioning, authorization code issuance; 303 to the product.
4. ``token``: the product redeems the code at Keyhall ``/oauth2/token`` (client_secret_basic, PKCE).

Warm-up logins run first and are not counted. The run stops after ``--logins`` measured logins or
when ``--max-seconds`` have passed (warm-up included), whichever comes first. Rate limits are
turned off on the server (``KEYHALL_API_RATE_LIMIT_PER_MINUTE=0``). Processes are ended by their
PID and temporary files removed on exit (also on Ctrl-C or SIGTERM).

The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import hashlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

REPO = Path(__file__).resolve().parents[1]
PEER_DIR = REPO / "tests" / "peers" / "oidc_provider"
STARTUP_TIMEOUT = 30.0  # seconds, for each process to be ready
REQUEST_TIMEOUT = 15.0  # seconds, for each HTTP request the benchmark makes
MAX_IDP_REQUESTS = 12  # in one IdP interaction; the usual flow takes seven
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_PROMPT_INPUT = re.compile(r'<input[^>]*name="prompt"[^>]*value="([a-z_]+)"')

STEPS: tuple[tuple[str, str], ...] = (
    ("authorize", "Keyhall /oauth2/authorize -> 303 to the IdP"),
    ("idp", "IdP interaction (login + consent), not Keyhall"),
    ("callback", "Keyhall callback: IdP code exchange, ID token, provisioning"),
    ("token", "Keyhall /oauth2/token (code -> tokens)"),
    ("keyhall", "Keyhall's own share (authorize + callback + token)"),
    ("login", "whole login as the browser and product see it"),
)


class BenchError(Exception):
    """Something the benchmark cannot go on with; the message says what."""


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark dies without cleaning up (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """A process started by the benchmark, its output going to a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, command: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> Child:
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        return cls(name=name, process=process, log_path=log_path)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with status {self.process.returncode}:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL after five seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdin is not None:
            self.process.stdin.close()


def start_idp(workdir: Path, accounts: list[dict[str, Any]]) -> tuple[Child, str]:
    """The npm oidc-provider on a free port; returns it and its issuer (= the address it is reached at)."""
    node = shutil.which("node")
    if node is None:
        raise BenchError("`node` is not installed (Debian package nodejs; `make system-deps`)")
    if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise BenchError(f"oidc-provider is not installed: run `make peers` (npm ci in {PEER_DIR})")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    accounts_path = workdir / "idp-accounts.json"
    accounts_path.write_text(json.dumps(accounts), encoding="utf-8")
    command = [node, "provider.mjs", f"--port={port}", f"--issuer={issuer}", f"--accounts={accounts_path}",
               "--watch-stdin"]
    child = Child.start("oidc-provider", command, cwd=PEER_DIR, env={**os.environ, "NODE_ENV": "test"},
                        log_path=workdir / "idp.log")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while "READY " not in child.log():
        child.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"oidc-provider was not ready within {STARTUP_TIMEOUT:g} s:\n{child.log()[-3000:]}")
        time.sleep(0.05)
    return child, issuer


def keyhall_env(workdir: Path, database_url: str, public_url: str, log_level: str, *,
                count_requests: bool = False) -> dict[str, str]:
    """The server's environment. Rate limits are off, unless ``count_requests``: then every request is
    counted as with the default limits (a counter write per request), under limits no run reaches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
    limit = str(10**9) if count_requests else "0"
    env.update({
        "KEYHALL_DATA_DIR": str(workdir / "data"),
        "KEYHALL_DATABASE_URL": database_url,
        "KEYHALL_PUBLIC_URL": public_url,
        "KEYHALL_SECRET_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),  # a Fernet key
        "KEYHALL_ALLOW_INSECURE_IDP_URLS": "true",  # the IdP is http on loopback
        "KEYHALL_ALLOW_UNVERIFIED_DOMAINS": "true",  # route the bench's email domain without DNS proof
        "KEYHALL_API_RATE_LIMIT_PER_MINUTE": limit,  # no rate limit refuses a request of the run
        "KEYHALL_LOGIN_RATE_LIMIT_PER_MINUTE": limit,
        "KEYHALL_LOG_LEVEL": log_level,
    })
    return env


def keyhall_cli(env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    """Run ``python -m keyhall ARGS`` (migrates first) and parse its JSON output."""
    done = subprocess.run([sys.executable, "-m", "keyhall", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=STARTUP_TIMEOUT, check=False)
    if done.returncode != 0:
        raise BenchError(f"keyhall {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stderr.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def start_keyhall(workdir: Path, env: dict[str, str], port: int, extra: Sequence[str] = ()) -> Child:
    """``python -m keyhall serve`` on 127.0.0.1:PORT (``extra``: more ``serve`` options), waited for
    (bounded) until /readyz answers 200."""
    command = [sys.executable, "-m", "keyhall", "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    child = Child.start("keyhall", command, cwd=workdir, env=env, log_path=workdir / "keyhall.log")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=2.0) as client:
        while True:
            child.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    return child
            if time.monotonic() > deadline:
                raise BenchError(f"Keyhall was not ready within {STARTUP_TIMEOUT:g} s:\n{child.log()[-3000:]}")
            time.sleep(0.1)


@dataclass(frozen=True)
class Instance:
    """One ``keyhall serve`` on a fresh port, its environment and an instance-admin API token."""

    child: Child
    url: str
    token: str
    env: dict[str, str]


def start_instance(workdir: Path, database_url: str, log_level: str, extra: Sequence[str] = (), *,
                   count_requests: bool = False) -> Instance:
    """Migrate (``key create --instance``), then serve: what every benchmark of one instance starts with."""
    port = free_port()
    env = keyhall_env(workdir, database_url, f"http://127.0.0.1:{port}", log_level, count_requests=count_requests)
    token = str(keyhall_cli(env, workdir, "key", "create", "--instance")["token"])  # migrates too
    return Instance(start_keyhall(workdir, env, port, extra), f"http://127.0.0.1:{port}", token, env)


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the same clean-up as Ctrl-C


@contextlib.contextmanager
def fresh_database(workdir: Path, server_url: str | None) -> Iterator[tuple[str, str]]:
    """Yield (database URL, label): a SQLite file in ``workdir``, or a new PostgreSQL database that
    is dropped afterwards (forcing off connections left open)."""
    if server_url is None:
        yield f"sqlite:///{workdir / 'keyhall-bench.db'}", "sqlite"
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    if base.get_backend_name() != "postgresql":
        raise BenchError(f"--database-url must be a postgresql:// URL, not {base.drivername}://")
    if (base.host or "localhost") not in LOOPBACK_HOSTS:
        raise BenchError("--database-url must point at 127.0.0.1: the benchmark only talks to this machine")
    admin_url = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"keyhall_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise BenchError(f"cannot create a database at {base.render_as_string(hide_password=True)}: {exc}") from exc
    try:
        yield base.set(drivername="postgresql", database=name).render_as_string(hide_password=False), "postgresql"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- set-up over HTTP ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    keyhall_url: str
    idp_url: str
    connection_id: str
    domain: str
    users: tuple[str, ...]  # IdP subjects; sign-ins cycle through them
    client_id: str
    client_secret: str
    redirect_uri: str
    scope: str


def idp_accounts(domain: str, count: int) -> list[dict[str, Any]]:
    return [{"sub": f"user{i:05d}", "email": f"user{i:05d}@{domain}", "email_verified": True,
             "name": f"Bench User {i}", "given_name": "Bench", "family_name": f"User {i}",
             "groups": ["engineering", "bench"]} for i in range(count)]


def expect_status(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise BenchError(f"{what}: HTTP {response.status_code} {response.text[:1000]}")
    body: dict[str, Any] = response.json()
    return body


def make_setup(keyhall_url: str, idp_url: str, instance_token: str, domain: str, users: tuple[str, ...],
               scope: str) -> Setup:
    """An organization, an OIDC connection to the IdP (client registered there by RFC 7591) and a product."""
    headers = {"Authorization": f"Bearer {instance_token}"}
    with httpx.Client(base_url=keyhall_url, headers=headers, trust_env=False, timeout=REQUEST_TIMEOUT) as api:
        org = expect_status(api.post("/v1/organizations", json={"name": f"Bench {domain}"}), 201, "create organization")
        connections = f"/v1/organizations/{org['id']}/connections"
        body = {"protocol": "oidc", "name": "bench-idp", "domains": [domain],
                "oidc": {"issuer": idp_url, "client_id": "pending", "scope": "openid profile email groups"}}
        conn = expect_status(api.post(connections, json=body), 201, "create connection")
        with httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT) as idp:
            registered = expect_status(idp.post(f"{idp_url}/reg", json={
                "redirect_uris": [conn["redirect_uri"]], "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["authorization_code"], "response_types": ["code"]}), 201, "register at the IdP")
        expect_status(api.patch(f"{connections}/{conn['id']}", json={"oidc": {
            "client_id": registered["client_id"], "client_secret": registered["client_secret"]}}), 200,
            "configure connection")
        redirect_uri = f"http://127.0.0.1:{free_port()}/product/callback"  # never requested
        app = expect_status(api.post("/v1/applications", json={"name": f"Bench product {domain}",
                                                         "redirect_uris": [redirect_uri]}), 201, "create application")
    return Setup(keyhall_url=keyhall_url, idp_url=idp_url, connection_id=str(conn["id"]), domain=domain, users=users,
                 client_id=str(app["client_id"]), client_secret=str(app["client_secret"]), redirect_uri=redirect_uri,
                 scope=scope)


# --- one simulated browser -----------------------------------------------------------------------


class LoginError(Exception):
    """A login that did not complete; ``step`` says where."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


class Browser:
    """One person's browser (its own cookie jar and connections) plus the product's back channel."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.http = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT, follow_redirects=False)
        self.product = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT,
                                    auth=(setup.client_id, setup.client_secret))

    def close(self) -> None:
        self.http.close()
        self.product.close()

    def login(self, user: str) -> dict[str, float]:
        """One whole sign-in as a fresh visitor; returns each step's seconds."""
        s, timings = self.setup, {}
        self.http.cookies.clear()
        verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode({"response_type": "code", "client_id": s.client_id, "redirect_uri": s.redirect_uri,
                           "scope": s.scope, "state": state, "nonce": nonce, "login_hint": f"{user}@{s.domain}",
                           "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
                           "code_challenge_method": "S256"})

        started = time.perf_counter()
        response = self.http.get(f"{s.keyhall_url}/oauth2/authorize?{query}")
        timings["authorize"] = time.perf_counter() - started
        idp_url = response.headers.get("location", "")
        if response.status_code != 303 or not idp_url.startswith(s.idp_url):
            raise LoginError("authorize", f"HTTP {response.status_code} to {idp_url!r}: {response.text[:300]}")

        mark = time.perf_counter()
        callback_url = self._idp_interaction(idp_url, user)
        timings["idp"] = time.perf_counter() - mark

        mark = time.perf_counter()
        response = self.http.get(callback_url)
        timings["callback"] = time.perf_counter() - mark
        product_url = response.headers.get("location", "")
        if response.status_code != 303 or not product_url.startswith(s.redirect_uri):
            raise LoginError("callback", f"HTTP {response.status_code} to {product_url!r}: {response.text[:300]}")
        params = parse_qs(urlsplit(product_url).query)
        if params.get("state") != [state] or "code" not in params:
            raise LoginError("callback", f"unexpected redirect to the product: {product_url}")

        mark = time.perf_counter()
        response = self.product.post(f"{s.keyhall_url}/oauth2/token", data={
            "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": s.redirect_uri,
            "code_verifier": verifier})
        ended = time.perf_counter()
        timings["token"] = ended - mark
        if response.status_code != 200:
            raise LoginError("token", f"HTTP {response.status_code}: {response.text[:300]}")
        claims = jwt_claims(str(response.json().get("id_token", "..")))
        if claims.get("nonce") != nonce or claims.get("aud") not in (s.client_id, [s.client_id]):
            raise LoginError("token", f"ID token does not answer this request: {claims}")

        timings["keyhall"] = timings["authorize"] + timings["callback"] + timings["token"]
        timings["login"] = ended - started
        return timings

    def _idp_interaction(self, url: str, user: str) -> str:
        """Follow the IdP's pages (devInteractions login, then consent) until it sends the browser away."""
        idp_origin = httpx.URL(self.setup.idp_url).join("/")
        response = self.http.get(url)
        for _ in range(MAX_IDP_REQUESTS):
            if response.is_redirect:
                target = response.url.join(response.headers["location"])
                if target.join("/") != idp_origin:
                    if not str(target).startswith(f"{self.setup.keyhall_url}/sso/{self.setup.connection_id}/"):
                        raise LoginError("idp", f"the IdP sent the browser to {target}")
                    return str(target)
                response = self.http.get(target)
                continue
            prompt = _PROMPT_INPUT.search(response.text) if response.status_code == 200 else None
            if prompt is None or not response.url.path.startswith("/interaction/"):
                raise LoginError("idp", f"HTTP {response.status_code} at {response.url}: {response.text[:300]}")
            form = {"prompt": prompt.group(1)}
            if form["prompt"] == "login":
                form.update(login=user, password="x")  # devInteractions ignores the password
            response = self.http.post(response.url, data=form)
        raise LoginError("idp", f"still at the IdP after {MAX_IDP_REQUESTS} requests")


# --- driving -------------------------------------------------------------------------------------


@dataclass
class Phase:
    samples: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why the phase ended before its count: "time_limit", "errors", "interrupted"


class LoginBrowser(Protocol):
    def login(self, user: str) -> dict[str, float]: ...
    def close(self) -> None: ...


def run_phase(new_browser: Callable[[], LoginBrowser], user_for: Callable[[int], str], count: int, concurrency: int,
              deadline: float, max_errors: int, stop: threading.Event) -> Phase:
    """``count`` logins by ``concurrency`` browser threads; none starts after ``deadline`` or ``stop``.
    ``user_for(i)`` names the user of the i-th login; each thread has its own browser."""
    phase, lock = Phase(), threading.Lock()
    issued = 0

    def take() -> int | None:
        nonlocal issued
        with lock:
            if stop.is_set() or issued >= count:
                return None
            if time.monotonic() >= deadline:
                phase.stopped = phase.stopped or "time_limit"
                return None
            issued += 1
            return issued - 1

    def worker() -> None:
        browser = new_browser()
        try:
            while (index := take()) is not None:
                try:
                    timings = browser.login(user_for(index))
                except (LoginError, httpx.HTTPError, ValueError, KeyError) as exc:
                    with lock:
                        phase.errors.append(f"{type(exc).__name__}: {exc}")
                        if len(phase.errors) > max_errors:
                            phase.stopped = "errors"
                            stop.set()
                    continue
                with lock:
                    phase.samples.append(timings)
        finally:
            browser.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"browser-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)  # short joins keep Ctrl-C responsive
    except KeyboardInterrupt:
        phase.stopped = "interrupted"
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT * 2)
        raise
    finally:
        phase.seconds = time.perf_counter() - started
    return phase


# --- reporting -----------------------------------------------------------------------------------


def warm_then_measure(new_browser: Callable[[], LoginBrowser], user_for: Callable[[int], Callable[[int], str]],
                      args: argparse.Namespace, stop: threading.Event) -> tuple[Phase, Phase]:
    """``--warmup`` logins, then ``--logins`` measured ones (none when the warm-up was stopped), all
    within ``--max-seconds``; ``user_for(offset)`` names the person of each login."""
    deadline = time.monotonic() + args.max_seconds
    warmup = run_phase(new_browser, user_for(0), args.warmup, args.concurrency, deadline, args.max_errors, stop)
    measured = Phase()
    if not stop.is_set():
        measured = run_phase(new_browser, user_for(args.warmup), args.logins, args.concurrency, deadline,
                             args.max_errors, stop)
    else:
        measured.stopped = warmup.stopped
    return warmup, measured


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``values`` need not be sorted."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def step_stats(samples: list[dict[str, float]],
               steps: Sequence[tuple[str, str]] | None = None) -> dict[str, dict[str, float | None]]:
    """Per step: p50, p95, mean and max in milliseconds (None without samples, so the JSON stays JSON)."""
    stats: dict[str, dict[str, float | None]] = {}
    for step, _label in steps if steps is not None else STEPS:
        ms = [sample[step] * 1000 for sample in samples]
        values = (percentile(ms, 50), percentile(ms, 95), sum(ms) / len(ms), max(ms)) if ms else (None,) * 4
        stats[step] = {name: None if value is None else round(value, 2)
                       for name, value in zip(("p50_ms", "p95_ms", "mean_ms", "max_ms"), values, strict=True)}
    return stats


def step_line(step: str, row: dict[str, float | None], label: str) -> str:
    """One row of the per-step table: p50, p95, mean and max in milliseconds."""
    cells = " ".join(fmt_ms(row[name]) for name in ("p50_ms", "p95_ms", "mean_ms", "max_ms"))
    return f"{step:<10} {cells}  {label}"


def fmt_ms(value: float | None, width: int = 8) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"


def report(args: argparse.Namespace, database: str, warmup: Phase, measured: Phase, setup_seconds: float,
           load_before: tuple[float, float, float], out: Callable[[str], None]) -> dict[str, Any]:
    stats = step_stats(measured.samples)
    done = len(measured.samples)
    rate = done / measured.seconds if measured.seconds > 0 else 0.0
    summary: dict[str, Any] = {
        "bench": "login", "logins": done, "requested": args.logins, "errors": len(measured.errors),
        "concurrency": args.concurrency, "warmup": len(warmup.samples), "database": database,
        "seconds": round(measured.seconds, 3), "logins_per_second": round(rate, 2),
        "keyhall_share": round(sum(s["keyhall"] for s in measured.samples) /
                               sum(s["login"] for s in measured.samples), 3) if done else None,
        "steps": stats, "stopped": measured.stopped, "nproc": os.cpu_count(),
        "python": platform.python_version(), "setup_seconds": round(setup_seconds, 2),
        "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    out("")
    out(f"Keyhall login benchmark: {done} logins ({args.logins} asked), concurrency {args.concurrency}, "
        f"database {database}, warm-up {len(warmup.samples)}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}")
    out("")
    out(f"{'step':<10} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'max ms':>8}  what")
    out(f"{'-' * 10} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 8}  {'-' * 60}")
    for step, label in STEPS:
        row = stats[step]
        if step == "keyhall":
            out("")
        out(step_line(step, row, label))
    out("")
    out(f"throughput: {rate:.2f} logins/s ({done} logins in {measured.seconds:.2f} s)"
        + (f"; Keyhall's share of login time: {summary['keyhall_share'] * 100:.0f}%" if done else ""))
    if measured.errors or warmup.errors:
        out(f"errors: {len(warmup.errors)} in warm-up, {len(measured.errors)} measured; first: "
            f"{(warmup.errors + measured.errors)[0][:500]}")
    if measured.stopped:
        out(f"stopped early: {measured.stopped}")
    out(f"machine load (1 min) before the logins: {load_before[0]:.2f}, after: {summary['loadavg_1m_after']:.2f}"
        f" on {os.cpu_count()} CPUs (the IdP, Keyhall and this driver share them; other load skews the figures)")
    return summary


# --- entry point ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.login", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--logins", type=int, default=200, help="measured logins")
    parser.add_argument("--concurrency", type=int, default=4, help="simulated browsers (threads)")
    parser.add_argument("--warmup", type=int, default=10, help="logins before measuring (not counted)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="time budget for warm-up and measured logins; logins in flight finish")
    parser.add_argument("--users", type=int, default=50,
                        help="distinct IdP accounts, used in turn (the first login of each provisions it)")
    parser.add_argument("--scope", default="openid email profile groups", help="scope the product asks for")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server on 127.0.0.1 (e.g. postgresql://postgres@127.0.0.1:5432/postgres); "
                             "a fresh database is created there and dropped afterwards. Default: SQLite in a temp dir")
    parser.add_argument("--max-errors", type=int, default=10, help="stop after this many failed logins")
    parser.add_argument("--server-log-level", default="INFO", help="Keyhall's KEYHALL_LOG_LEVEL")
    parser.add_argument("--keep-logs", action="store_true", help="print the servers' log tails at the end")
    args = parser.parse_args(argv)
    for name in ("logins", "concurrency", "users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.max_errors < 0 or not 0 < args.max_seconds <= 3600:
        parser.error("--warmup and --max-errors must be >= 0, --max-seconds in (0, 3600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    def out(line: str) -> None:
        print(line, flush=True)

    children: list[Child] = []
    stop = threading.Event()
    try:
        with tempfile.TemporaryDirectory(prefix="keyhall-bench-") as tmp, \
                fresh_database(Path(tmp), args.database_url) as (database_url, database):
            workdir = Path(tmp)
            setup_started = time.monotonic()
            domain = f"bench-{uuid.uuid4().hex[:8]}.test"
            accounts = idp_accounts(domain, args.users)
            try:
                idp, issuer = start_idp(workdir, accounts)
                children.append(idp)
                keyhall = start_instance(workdir, database_url, args.server_log_level)
                children.append(keyhall.child)
                setup = make_setup(keyhall.url, issuer, keyhall.token, domain,
                                   tuple(str(a["sub"]) for a in accounts), args.scope)
                setup_seconds = time.monotonic() - setup_started
                out(f"set up in {setup_seconds:.1f} s: IdP {issuer}, Keyhall {keyhall.url} on {database}; "
                    f"warm-up {args.warmup}, then {args.logins} logins at concurrency {args.concurrency}")

                load_before = os.getloadavg()

                def user_for(offset: int) -> Callable[[int], str]:
                    return lambda index: setup.users[(offset + index) % len(setup.users)]

                warmup, measured = warm_then_measure(lambda: Browser(setup), user_for, args, stop)
                summary = report(args, database, warmup, measured, setup_seconds, load_before, out)
                if args.keep_logs:
                    for child in children:
                        out(f"--- {child.name} log (tail) ---\n{child.log()[-2000:]}")
            finally:
                for child in reversed(children):
                    child.stop()
    except BenchError as exc:
        print(f"bench.login: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.login: interrupted; processes stopped and temporary files removed", file=sys.stderr)
        return 130
    out(json.dumps(summary, sort_keys=True))
    return 0 if not (summary["errors"] or warmup.errors) and summary["logins"] else 1


if __name__ == "__main__":
    sys.exit(main())
