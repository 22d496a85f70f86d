"""The benchmark suite of issue 11: Keyhall's CPU per operation, read from the server process's CPU
clock, beside a bare FastAPI route served from the same venv in the same run, printed as one table
with the issue's targets and pass/miss.

    .venv/bin/python -m bench.suite                      # a few minutes, SQLite
    .venv/bin/python -m bench.suite --hrd-domains 1000000 --logins 200
    .venv/bin/python -m bench.suite --workers 2          # keyhall serve --workers 2
    .venv/bin/python -m bench.suite --database-url postgresql://postgres@127.0.0.1:5432/postgres

Everything runs on 127.0.0.1: the npm oidc-provider and saml-idp (``make peers``), one ``keyhall serve``
on a fresh database, and ``bench.bare`` (the floor). Each phase reads the CPU clock of the Keyhall
process tree (``/proc/<pid>/stat``) before and after; see bench/README.md for what each row does.
The last line printed is a one-line JSON summary. Exit status: 0 when every operation succeeded
(whatever the targets say), 1 when some failed, 2 when the set-up failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from bench import login as oidc_bench
from bench import saml as saml_bench
from bench.login import (
    REQUEST_TIMEOUT,
    STARTUP_TIMEOUT,
    BenchError,
    Child,
    LoginError,
    b64url,
    expect_status,
    free_port,
    fresh_database,
    idp_accounts,
    percentile,
    start_instance,
    stop_on_sigterm,
)
from bench.proc import Burst, burst, cpu_seconds, reference_loop_seconds, worker_rss


@dataclass
class Row:
    """One line of the table: a Keyhall figure, its floor (the bare route) where there is one, the target."""

    key: str
    what: str
    value: float | None
    unit: str
    target: str
    passed: bool | None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# --- set-up --------------------------------------------------------------------------------------


@dataclass
class Servers:
    keyhall: Child
    keyhall_url: str
    bare_url: str
    token: str
    database_url: str
    env: dict[str, str]
    oidc: oidc_bench.Setup
    saml: saml_bench.Setup
    organization_id: str = ""


def start_bare(workdir: Path) -> tuple[Child, str]:
    port = free_port()
    child = Child.start("bare", [sys.executable, "-m", "bench.bare", "--port", str(port)],
                        cwd=Path(__file__).resolve().parents[1], env=dict(os.environ),
                        log_path=workdir / "bare.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            child.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/bare").status_code == 200:
                    return child, url
            if time.monotonic() > deadline:
                raise BenchError(f"the bare route was not ready within {STARTUP_TIMEOUT:g} s:\n{child.log()[-3000:]}")
            time.sleep(0.05)


def start_all(workdir: Path, database_url: str, args: argparse.Namespace, children: list[Child]) -> Servers:
    domain = f"bench-{uuid.uuid4().hex[:8]}.test"
    accounts = idp_accounts(domain, args.users)
    oidc_idp, issuer = oidc_bench.start_idp(workdir, accounts)
    children.append(oidc_idp)
    saml_idp, saml_url, saml_cert = saml_bench.start_idp(workdir)
    children.append(saml_idp)
    extra = ["--workers", str(args.workers)] if args.workers > 1 else []
    instance = start_instance(workdir, database_url, args.server_log_level, extra, count_requests=args.count_requests)
    keyhall, env, token, url = instance.child, instance.env, instance.token, instance.url
    children.append(keyhall)
    bare, bare_url = start_bare(workdir)
    children.append(bare)
    oidc = oidc_bench.make_setup(url, issuer, token, domain, tuple(str(a["sub"]) for a in accounts), args.scope)
    saml = saml_bench.make_setup(url, saml_url, saml_cert, token, f"saml-{uuid.uuid4().hex[:8]}.test",
                                 pin_certificate=True)
    servers = Servers(keyhall=keyhall, keyhall_url=url, bare_url=bare_url, token=token, database_url=database_url,
                      env=env, oidc=oidc, saml=saml)
    with api_client(servers) as api:
        orgs = expect_status(api.get("/v1/organizations", params={"limit": 100}), 200, "list organizations")
        for org in orgs["data"]:
            found = api.get(f"/v1/organizations/{org['id']}/connections/{oidc.connection_id}")
            if found.status_code == 200:
                servers.organization_id = str(org["id"])
    if not servers.organization_id:
        raise BenchError("cannot find the organization of the OIDC connection")
    return servers


def api_client(servers: Servers) -> httpx.Client:
    return httpx.Client(base_url=servers.keyhall_url, headers={"Authorization": f"Bearer {servers.token}"},
                        trust_env=False, timeout=REQUEST_TIMEOUT)


# --- phases --------------------------------------------------------------------------------------


def login_phase(servers: Servers, args: argparse.Namespace, kind: str) -> Burst:
    """Complete logins (``kind`` "oidc" or "saml") from ``--concurrency`` browsers; warm-up not counted."""
    count = args.logins if kind == "oidc" else args.saml_logins
    browsers: list[Any] = []

    def new_browser() -> Any:
        browser = oidc_bench.Browser(servers.oidc) if kind == "oidc" else saml_bench.Browser(servers.saml)
        browsers.append(browser)
        return browser

    def user(index: int) -> str:
        return servers.oidc.users[index % len(servers.oidc.users)] if kind == "oidc" else f"user{index % 50:05d}"

    def one(browser: Any, index: int) -> None:
        browser.login(user(index))

    def close(browser: Any) -> None:
        browser.close()

    burst(servers.keyhall.process.pid, args.warmup, args.concurrency, one, new_browser, close,
          deadline=time.monotonic() + args.phase_seconds)
    return burst(servers.keyhall.process.pid, count, args.concurrency, one, new_browser, close,
                 deadline=time.monotonic() + args.phase_seconds)


def collect_codes(servers: Servers, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Authorization codes (with their PKCE verifiers) from whole OIDC logins, not yet redeemed."""
    s, codes = servers.oidc, []

    def one(browser: oidc_bench.Browser, index: int) -> None:
        browser.http.cookies.clear()
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        user = s.users[index % len(s.users)]
        query = urlencode({"response_type": "code", "client_id": s.client_id, "redirect_uri": s.redirect_uri,
                           "scope": s.scope, "state": state, "nonce": secrets.token_urlsafe(16),
                           "login_hint": f"{user}@{s.domain}", "code_challenge_method": "S256",
                           "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest())})
        response = browser.http.get(f"{s.keyhall_url}/oauth2/authorize?{query}")
        if response.status_code != 303:
            raise LoginError("authorize", f"HTTP {response.status_code}")
        response = browser.http.get(browser._idp_interaction(response.headers["location"], user))
        code = parse_qs(urlsplit(response.headers.get("location", "")).query).get("code")
        if response.status_code != 303 or not code:
            raise LoginError("callback", f"HTTP {response.status_code}: {response.text[:200]}")
        codes.append((code[0], verifier))

    done = burst(servers.keyhall.process.pid, args.codes, args.concurrency, one, lambda: oidc_bench.Browser(s),
                 lambda b: b.close(), deadline=time.monotonic() + 40)  # codes live 60 s
    if done.errors:
        raise BenchError(f"collecting authorization codes: {done.errors[0]}")
    return codes


def token_phase(servers: Servers, args: argparse.Namespace) -> Burst:
    s = servers.oidc
    codes = collect_codes(servers, args)

    def one(client: httpx.Client, index: int) -> None:
        code, verifier = codes[index]
        response = client.post(f"{s.keyhall_url}/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": s.redirect_uri,
            "code_verifier": verifier})
        if response.status_code != 200 or "id_token" not in response.json():
            raise LoginError("token", f"HTTP {response.status_code}: {response.text[:200]}")

    return burst(servers.keyhall.process.pid, len(codes), 2, one,
                 lambda: httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT, auth=(s.client_id, s.client_secret)),
                 lambda c: c.close())


def access_token(servers: Servers, args: argparse.Namespace) -> str:
    """A fresh access token of the bench product, from one whole OIDC login and its code's redemption."""
    s = servers.oidc
    code, verifier = collect_codes(servers, argparse.Namespace(**{**vars(args), "codes": 1}))[0]
    with httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT, auth=(s.client_id, s.client_secret)) as client:
        response = client.post(f"{s.keyhall_url}/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": s.redirect_uri,
            "code_verifier": verifier})
    return str(expect_status(response, 200, "token request")["access_token"])


def acs_phase(servers: Servers, args: argparse.Namespace) -> Burst:
    """SAML Responses from the IdP (authorize + IdP pages, not measured), then their ACS posts alone."""
    s = servers.saml
    pending: list[tuple[saml_bench.Browser, str, dict[str, str]]] = []

    def collect(_client: None, index: int) -> None:
        browser = saml_bench.Browser(s)
        email = f"user{index % 50:05d}@{s.domain}"
        query = urlencode({"response_type": "code", "client_id": s.client_id, "redirect_uri": s.redirect_uri,
                           "scope": "openid email", "state": secrets.token_urlsafe(16), "login_hint": email,
                           "nonce": secrets.token_urlsafe(16), "code_challenge_method": "S256",
                           "code_challenge": b64url(hashlib.sha256(b"v" * 43).digest())})
        try:
            response = browser.http.get(f"{s.keyhall_url}/oauth2/authorize?{query}")
            if response.status_code != 303:
                raise LoginError("authorize", f"HTTP {response.status_code}")
            action, form = browser._at_idp(response.headers["location"], email, email.split("@")[0])
        except Exception:
            browser.close()
            raise
        pending.append((browser, action, form))

    collected = burst(servers.keyhall.process.pid, args.acs, 1, collect, deadline=time.monotonic() + 60)
    if collected.errors:
        raise BenchError(f"collecting SAML Responses: {collected.errors[0]}")

    def one(_client: None, index: int) -> None:
        browser, action, form = pending[index]
        response = browser.http.post(action, data=form)
        if response.status_code != 303:
            raise LoginError("acs", f"HTTP {response.status_code}: {response.text[:200]}")

    try:
        return burst(servers.keyhall.process.pid, len(pending), 2, one)
    finally:
        for browser, _action, _form in pending:
            browser.close()


def get_phase(pid: int, url: str, headers: dict[str, str], count: int, concurrency: int) -> Burst:
    def one(client: httpx.Client, _index: int) -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise LoginError("get", f"HTTP {response.status_code}: {response.text[:200]}")

    def client() -> httpx.Client:
        return httpx.Client(trust_env=False, headers=headers, timeout=REQUEST_TIMEOUT)

    warm = burst(pid, min(count, 50), concurrency, one, client, lambda c: c.close())
    if warm.errors:
        raise BenchError(f"GET {url}: {warm.errors[0]}")
    return burst(pid, count, concurrency, one, client, lambda c: c.close())


def patch_phase(servers: Servers, args: argparse.Namespace) -> Burst:
    url = f"{servers.keyhall_url}/v1/organizations/{servers.organization_id}/connections/{servers.oidc.connection_id}"
    headers = {"Authorization": f"Bearer {servers.token}"}

    def one(client: httpx.Client, index: int) -> None:
        response = client.patch(url, json={"display_name": f"Bench {index % 1000}"})
        if response.status_code != 200:
            raise LoginError("patch", f"HTTP {response.status_code}: {response.text[:200]}")

    def client() -> httpx.Client:
        return httpx.Client(trust_env=False, headers=headers, timeout=REQUEST_TIMEOUT)

    burst(servers.keyhall.process.pid, min(args.patches, 20), 1, one, client, lambda c: c.close())
    return burst(servers.keyhall.process.pid, args.patches, 1, one, client, lambda c: c.close())


# --- home-realm discovery at scale ---------------------------------------------------------------


def seed_domains(servers: Servers, total: int, per_connection: int) -> list[str]:
    """``total`` routed domains, ``per_connection`` per connection, written straight into the bench's
    database through Keyhall's storage models: copies of the bench OIDC connection (so each routes to
    the real IdP), in the bench organization. Returns the seeded domain names."""
    from sqlalchemy import insert, select

    from keyhall.storage.engine import build_engine
    from keyhall.storage.models import ConnectionDomainRow, ConnectionRow

    engine = build_engine(servers.database_url)
    connections, domains_table = ConnectionRow.__table__, ConnectionDomainRow.__table__
    names: list[str] = []
    try:
        with engine.begin() as db:
            template = dict(db.execute(select(connections).where(connections.c.id == servers.oidc.connection_id))
                            .mappings().one())
            batch_conns: list[dict[str, Any]] = []
            batch_domains: list[dict[str, Any]] = []
            for number in range(-(-total // per_connection)):
                conn_id = str(uuid.uuid4())
                batch_conns.append({**template, "id": conn_id, "name": f"hrd-{number}", "sso_configuration_id": None})
                for position in range(min(per_connection, total - number * per_connection)):
                    name = f"d{number}-{position}.hrd-{uuid.uuid4().hex[:6]}.test"
                    names.append(name)
                    batch_domains.append({"connection_id": conn_id, "domain": name, "position": position,
                                          "organization_id": template["organization_id"]})
                if len(batch_domains) >= 20_000:
                    db.execute(insert(connections), batch_conns)
                    db.execute(insert(domains_table), batch_domains)
                    batch_conns, batch_domains = [], []
            if batch_conns:
                db.execute(insert(connections), batch_conns)
                db.execute(insert(domains_table), batch_domains)
    finally:
        engine.dispose()
    return names


def lookup_latencies(servers: Servers, names: list[str], count: int, seconds: float) -> list[float]:
    """``connections.by_domain`` (home-realm discovery's storage call) on random seeded domains, in this
    process, one unit of work each: seconds per lookup; at most ``count``, none started after ``seconds``."""
    from keyhall.security.secrets import SecretBox, parse_key_list
    from keyhall.storage.database import Database

    database = Database(servers.database_url, SecretBox(parse_key_list(servers.env["KEYHALL_SECRET_KEYS"])))
    rng, latencies = random.Random(11), []
    try:
        deadline = time.monotonic() + seconds
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            name = rng.choice(names)
            mark = time.perf_counter()
            with database.unit_of_work() as uow:
                found = uow.connections.by_domain(name)
            latencies.append(time.perf_counter() - mark)
            if len(found) != 1:
                raise BenchError(f"home-realm discovery of {name} found {len(found)} connections")
    finally:
        database.dispose()
    return latencies


def sql_lookup_latencies(servers: Servers, names: list[str], count: int, seconds: float) -> list[float]:
    """The SQL of discovery's first step alone (``SELECT connection_id FROM connection_domains WHERE
    domain = ?``) on one open connection, in this process: seconds per query."""
    from sqlalchemy import select

    from keyhall.storage.engine import build_engine
    from keyhall.storage.models import ConnectionDomainRow

    engine = build_engine(servers.database_url)
    rng, latencies = random.Random(13), []
    try:
        with engine.connect() as db:
            deadline = time.monotonic() + seconds
            for _ in range(count):
                if time.monotonic() > deadline:
                    break
                query = select(ConnectionDomainRow.connection_id).where(ConnectionDomainRow.domain == rng.choice(names))
                mark = time.perf_counter()
                found = db.execute(query).all()
                latencies.append(time.perf_counter() - mark)
                if len(found) != 1:
                    raise BenchError(f"{len(found)} rows for one seeded domain")
                db.rollback()
    finally:
        engine.dispose()
    return latencies


def hrd_authorize_phase(servers: Servers, names: list[str], count: int, seconds: float) -> Burst:
    """``/oauth2/authorize`` with a ``login_hint`` at a random seeded domain: the whole discovery
    path in the server (303 to the IdP)."""
    s, rng = servers.oidc, random.Random(12)

    def one(client: httpx.Client, _index: int) -> None:
        query = urlencode({"response_type": "code", "client_id": s.client_id, "redirect_uri": s.redirect_uri,
                           "scope": "openid email", "state": "s" * 16, "nonce": "n" * 16,
                           "login_hint": f"someone@{rng.choice(names)}", "code_challenge_method": "S256",
                           "code_challenge": b64url(hashlib.sha256(b"v" * 43).digest())})
        client.cookies.clear()
        response = client.get(f"{s.keyhall_url}/oauth2/authorize?{query}")
        if response.status_code != 303 or not response.headers.get("location", "").startswith(s.idp_url):
            raise LoginError("authorize", f"HTTP {response.status_code}: {response.text[:200]}")

    def client() -> httpx.Client:
        return httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT)

    return burst(servers.keyhall.process.pid, count, 4, one, client, lambda c: c.close(),
                 deadline=time.monotonic() + seconds)


# --- the table -----------------------------------------------------------------------------------


def _check(value: float | None, limit: float, below: bool = True) -> bool | None:
    if value is None:
        return None
    return value <= limit if below else value >= limit


def _below(value: float | None, limit: float) -> bool | None:
    return None if value is None else value < limit


def _p(values: list[float], q: float) -> float | None:
    return percentile([v * 1000 for v in values], q) if values else None


def _times(value: float | None, floor: float | None) -> str:
    """``bare 0.10 ms -> 3.7x; `` (the multiple of the bare route's CPU per GET), or nothing."""
    return f"bare {_ms(floor)} ms -> {value / floor:.1f}x; " if value is not None and floor else ""


def _burst_detail(b: Burst) -> str:
    rate = b.per_second()
    return (f"{b.done} ops, {b.cpu:.2f} s CPU in {b.seconds:.2f} s, {rate:.1f}/s wall" if rate else f"{b.done} ops")


def run(args: argparse.Namespace, out: Callable[[str], None]) -> tuple[list[Row], dict[str, Any], bool]:
    children: list[Child] = []
    rows: list[Row] = []
    errors: list[str] = []
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="keyhall-bench-suite-") as tmp, \
            fresh_database(Path(tmp), args.database_url) as (database_url, database):
        facts["database"] = database
        try:
            started = time.monotonic()
            servers = start_all(Path(tmp), database_url, args, children)
            pid = servers.keyhall.process.pid
            out(f"set up in {time.monotonic() - started:.1f} s: Keyhall {servers.keyhall_url} "
                f"(workers {args.workers}) on {database}, bare route {servers.bare_url}; "
                f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            facts["loadavg_1m_before"] = round(os.getloadavg()[0], 2)

            def note(name: str, b: Burst) -> Burst:
                errors.extend(f"{name}: {e}" for e in b.errors[:3])
                out(f"  {name}: {_burst_detail(b)}" + (f", {len(b.errors)} errors" if b.errors else ""))
                return b

            if "oidc" in args.rows:
                b = note("oidc logins", login_phase(servers, args, "oidc"))
                rows.append(Row("oidc_login", "CPU per complete OIDC login (authorize, callback, token)",
                                b.cpu_ms_per_op(), "ms", "<= 3 ms", _check(b.cpu_ms_per_op(), 3.0),
                                f"{b.done} logins at concurrency {args.concurrency}, "
                                f"{b.per_second() or 0:.1f} logins/s"))
            if "saml" in args.rows:
                b = note("saml logins", login_phase(servers, args, "saml"))
                rows.append(Row("saml_login", "CPU per complete SAML login (authorize, ACS, complete, token)",
                                b.cpu_ms_per_op(), "ms", "<= 4 ms", _check(b.cpu_ms_per_op(), 4.0),
                                f"{b.done} logins at concurrency {args.concurrency}, "
                                f"{b.per_second() or 0:.1f} logins/s"))
                b = note("acs posts", acs_phase(servers, args))
                per_core = b.done / b.cpu if b.cpu > 0 else None
                rows.append(Row("saml_acs", "ACS alone, per second of one core (1 / CPU per ACS)", per_core, "/s",
                                ">= 600/s", _check(per_core, 600, below=False),
                                f"{b.done} ACS posts, {_ms(b.cpu_ms_per_op())} ms CPU each"))
            if "token" in args.rows:
                b = note("token requests", token_phase(servers, args))
                per_core = b.done / b.cpu if b.cpu > 0 else None
                rows.append(Row("token", "token endpoint (code -> ID token), per second of one core", per_core,
                                "/s", ">= 900/s", _check(per_core, 900, below=False),
                                f"{b.done} codes, {_ms(b.cpu_ms_per_op())} ms CPU each, "
                                f"{b.per_second() or 0:.0f}/s wall from 2 clients"))
            floor_ms: float | None = None  # the bare route's CPU per GET, once measured
            floors: list[Burst] = []

            def bare_floor() -> float | None:
                nonlocal floor_ms
                if floor_ms is None:
                    b = note("GET bare route", get_phase(children[-1].process.pid, f"{servers.bare_url}/bare", {},
                                                         args.gets, args.get_concurrency))
                    floor_ms = b.cpu_ms_per_op()
                    floors.append(b)
                return floor_ms

            if "get" in args.rows:
                url = (f"{servers.keyhall_url}/v1/organizations/{servers.organization_id}/connections/"
                       f"{servers.oidc.connection_id}")
                headers = {"Authorization": f"Bearer {servers.token}"}
                b = note("GET connection", get_phase(pid, url, headers, args.gets, args.get_concurrency))
                f = bare_floor()
                floor = floors[-1]
                k = b.cpu_ms_per_op()
                ratio = k / f if k is not None and f else None
                rows.append(Row("get_cpu", "GET one connection, CPU per request (x the bare route)", k, "ms",
                                "<= 2.5x bare", _check(ratio, 2.5),
                                f"bare {_ms(f)} ms -> {ratio:.1f}x; {b.per_second() or 0:.0f}/s vs bare "
                                f"{floor.per_second() or 0:.0f}/s wall" if ratio else "",
                                {"bare_ms": f, "ratio": ratio}))
                p99 = _p(b.latencies, 99)
                rows.append(Row("get_p99", f"GET p99 with {args.get_concurrency} concurrent clients", p99, "ms",
                                "< 20 ms", _below(p99, 20.0),
                                f"p50 {_ms(_p(b.latencies, 50))} ms; bare route p99 {_ms(_p(floor.latencies, 99))} ms",
                                {"bare_p99_ms": _p(floor.latencies, 99)}))
            if "provider" in args.rows:  # what products call besides the token endpoint (informational)
                headers = {"Authorization": f"Bearer {access_token(servers, args)}"}
                b = note("userinfo", get_phase(pid, f"{servers.keyhall_url}/oauth2/userinfo", headers, args.gets,
                                               args.get_concurrency))
                f = bare_floor()
                rows.append(Row("userinfo_cpu", "userinfo with an access token, CPU per request", b.cpu_ms_per_op(),
                                "ms", "(none)", None, f"{_times(b.cpu_ms_per_op(), f)}{b.done} requests from "
                                f"{args.get_concurrency} clients, p99 {_ms(_p(b.latencies, 99))} ms"))
                b = note("JWKS", get_phase(pid, f"{servers.keyhall_url}/oauth2/jwks", {}, args.gets,
                                           args.get_concurrency))
                rows.append(Row("jwks_cpu", "JWKS, CPU per request", b.cpu_ms_per_op(), "ms", "(none)", None,
                                f"{_times(b.cpu_ms_per_op(), f)}{b.done} requests from {args.get_concurrency} "
                                f"clients, p99 {_ms(_p(b.latencies, 99))} ms"))
            if "patch" in args.rows:
                b = note("PATCH connection", patch_phase(servers, args))
                rows.append(Row("patch_cpu", "PATCH a connection, CPU per request", b.cpu_ms_per_op(), "ms",
                                "<= 1 ms", _check(b.cpu_ms_per_op(), 1.0),
                                f"{b.done} patches from 1 client, {b.per_second() or 0:.0f}/s wall"))
            if "hrd" in args.rows:
                mark = time.monotonic()
                names = seed_domains(servers, args.hrd_domains, args.hrd_per_connection)
                out(f"  seeded {len(names)} domains ({args.hrd_per_connection} per connection) in "
                    f"{time.monotonic() - mark:.1f} s")
                lookups = lookup_latencies(servers, names, args.lookups, args.phase_seconds / 3)
                p99 = _p(lookups, 99)
                rows.append(Row("hrd_p99", f"home-realm discovery with {len(names)} domains, p99 of the lookup",
                                p99, "ms", "< 1 ms", _below(p99, 1.0),
                                f"{len(lookups)} storage lookups; p50 {_ms(_p(lookups, 50))} ms",
                                {"domains": len(names)}))
                sql = sql_lookup_latencies(servers, names, args.lookups, args.phase_seconds / 3)
                rows.append(Row("hrd_sql_p99", "  the SQL by domain alone (one connection), p99", _p(sql, 99), "ms",
                                "(none)", None, f"{len(sql)} queries; p50 {_ms(_p(sql, 50))} ms"))
                b = note("authorize with a seeded domain",
                         hrd_authorize_phase(servers, names, args.hrd_authorizes, args.phase_seconds / 3))
                rows.append(Row("hrd_authorize", "  /oauth2/authorize at a seeded domain: CPU per request",
                                b.cpu_ms_per_op(), "ms", "(none)", None,
                                f"p99 {_ms(_p(b.latencies, 99))} ms at 4 clients, {b.per_second() or 0:.0f}/s"))
            rss = worker_rss(pid) / 2**20
            rows.append(Row("rss", "RSS of the worker after the benchmarks", rss, "MB", "< 120 MB",
                            rss < 120, f"largest process of the keyhall serve tree ({args.workers} worker(s))"))
            facts["server_cpu_total_s"] = round(cpu_seconds(pid), 2)
            facts["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            facts["reference_loop_s"] = round(reference_loop_seconds(), 3)
        finally:
            for child in reversed(children):
                child.stop()
    return rows, facts, not errors


def print_table(rows: list[Row], args: argparse.Namespace, facts: dict[str, Any], out: Callable[[str], None]) -> None:
    out("")
    out(f"Keyhall benchmark suite: database {facts.get('database')}, workers {args.workers}, requests counted "
        f"against rate limits: {'yes' if args.count_requests else 'no'}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load {facts.get('loadavg_1m_before')} -> "
        f"{facts.get('loadavg_1m_after')}, reference loop {facts.get('reference_loop_s')} s "
        f"(bench.proc.reference_loop_seconds: the machine's speed)")
    out("")
    out(f"{'measure':<64} {'Keyhall':>10} {'unit':<4} {'target':<13} {'':<4}  detail")
    out(f"{'-' * 64} {'-' * 10} {'-' * 4} {'-' * 13} {'-' * 4}  {'-' * 50}")
    for row in rows:
        verdict = {True: "pass", False: "MISS", None: ""}[row.passed]
        value = "-" if row.value is None else (f"{row.value:.2f}" if row.value < 100 else f"{row.value:.0f}")
        out(f"{row.what:<64} {value:>10} {row.unit:<4} {row.target:<13} {verdict:<4}  {row.detail}")


ROWS = ("oidc", "saml", "token", "get", "provider", "patch", "hrd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--logins", type=int, default=60, help="measured complete OIDC logins")
    parser.add_argument("--saml-logins", type=int, default=60, help="measured complete SAML logins")
    parser.add_argument("--concurrency", type=int, default=4, help="simulated browsers during login phases")
    parser.add_argument("--warmup", type=int, default=5, help="logins of each kind before measuring")
    parser.add_argument("--acs", type=int, default=100, help="SAML Responses collected, then posted to the ACS")
    parser.add_argument("--codes", type=int, default=100,
                        help="authorization codes collected (codes live 60 s), then redeemed")
    parser.add_argument("--gets", type=int, default=2000, help="GET requests, on Keyhall and on the bare route")
    parser.add_argument("--get-concurrency", type=int, default=8, help="GET clients (threads)")
    parser.add_argument("--patches", type=int, default=300, help="PATCH requests (one client)")
    parser.add_argument("--hrd-domains", type=int, default=200_000, help="routed domains seeded for discovery")
    parser.add_argument("--hrd-per-connection", type=int, default=4, help="seeded domains per connection")
    parser.add_argument("--lookups", type=int, default=2000, help="discovery lookups timed")
    parser.add_argument("--hrd-authorizes", type=int, default=300, help="authorize requests at seeded domains")
    parser.add_argument("--users", type=int, default=50, help="distinct IdP accounts")
    parser.add_argument("--scope", default="openid email profile groups")
    parser.add_argument("--workers", type=int, default=1, help="keyhall serve --workers")
    parser.add_argument("--phase-seconds", type=float, default=60.0,
                        help="time budget of each login phase (a third of it for the discovery lookups, and as "
                             "much for the authorize requests at seeded domains)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server on 127.0.0.1; a fresh database is created and dropped. Default SQLite")
    parser.add_argument("--server-log-level", default="WARNING", help="Keyhall's KEYHALL_LOG_LEVEL")
    parser.add_argument("--count-requests", action="store_true",
                        help="count every request against rate limits as the default settings do (a counter write "
                             "per API call and sign-in request), under limits the run never reaches; off: no counting")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := set(args.rows) - set(ROWS):
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    for name in ("logins", "saml_logins", "concurrency", "acs", "codes", "gets", "get_concurrency", "patches",
                 "hrd_domains", "hrd_per_connection", "lookups", "hrd_authorizes", "users", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.codes > 1000 or args.acs > 1000:
        parser.error("--codes and --acs are at most 1000 (codes expire 60 s after they are issued)")
    if not 0 < args.phase_seconds <= 600:
        parser.error("--phase-seconds must be in (0, 600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    def out(line: str) -> None:
        print(line, flush=True)

    started = time.monotonic()
    try:
        rows, facts, ok = run(args, out)
    except BenchError as exc:
        print(f"bench.suite: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.suite: interrupted; processes stopped and temporary files removed", file=sys.stderr)
        return 130
    print_table(rows, args, facts, out)
    out(f"\n{len([r for r in rows if r.passed])} of {len([r for r in rows if r.passed is not None])} targets met; "
        f"{time.monotonic() - started:.0f} s in all")
    summary = {"bench": "suite", **facts, "workers": args.workers, "nproc": os.cpu_count(),
               "rows": {r.key: {"value": None if r.value is None else round(r.value, 3), "unit": r.unit,
                                "target": r.target, "passed": r.passed, **r.extra} for r in rows}}
    out(json.dumps(summary, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
