"""Load benchmark: several client processes drive the management API and complete sign-ins against
two Keyhall instances on one PostgreSQL database, behind a round-robin TCP proxy, for a bounded time.

One command::

    .venv/bin/python -m bench.load                                # 20 s, 2 instances, 3 API + 2 login clients
    .venv/bin/python -m bench.load --seconds 60 --api-clients 4 --login-clients 2

It starts the npm ``oidc-provider`` (``tests/peers/oidc_provider``, after ``npm ci`` there), creates
a fresh PostgreSQL database (dropped afterwards), runs ``python -m keyhall serve`` ``--instances``
times on it with one ``KEYHALL_SECRET_KEYS``, and puts a round-robin TCP proxy (one backend per
accepted connection; ``tests.support.servers.TcpProxy``) in front of them. The proxy's URL is
``KEYHALL_PUBLIC_URL``: the issuer, and the base of the IdP's redirect back to Keyhall.

Client processes (``multiprocessing``, spawned), all through the proxy, until ``--seconds`` pass:

- ``--api-clients`` management clients, each with its own owner key of one organization, repeat:
  ``create`` an OIDC connection (Keyhall fetches the IdP's discovery document and JWKS before
  storing it), ``read`` it three times, ``patch`` it twice (with ``If-Match``), ``list`` the
  organization's connections. Keep-alive connections: each client sticks to the instance its
  connection was given.
- ``--login-clients`` browsers, each signing people in completely: product → Keyhall
  ``/oauth2/authorize`` → the IdP (login and consent) → Keyhall callback → product ``/oauth2/token``.
  Every request opens a new TCP connection (``Connection: close``), so the steps of one sign-in
  are spread over the instances by the proxy.

Rate limits are off (``KEYHALL_API_RATE_LIMIT_PER_MINUTE=0``). The report gives, per operation,
the count, throughput, p50/p99 latency and errors, then how the proxy spread connections over the
instances; the last line is a one-line JSON summary. Exit status: 0 without errors, 1 with some,
2 when the set-up failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.login import (
    REQUEST_TIMEOUT,
    BenchError,
    Browser,
    Child,
    LoginError,
    Setup,
    fmt_ms,
    fresh_database,
    idp_accounts,
    keyhall_cli,
    keyhall_env,
    make_setup,
    percentile,
    start_idp,
    start_keyhall,
    stop_on_sigterm,
)
from bench.login import free_port as _free_port

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_ALLOWANCE = 5.0  # seconds for the client processes to start before they all begin at once
API_OPERATIONS = ("create", "read", "patch", "list")
LOGIN_OPERATIONS = ("login", "login_keyhall")
OPERATION_LABELS = {
    "create": "POST connection (IdP discovery + JWKS fetched, row + domain + audit)",
    "read": "GET connection",
    "patch": "PATCH connection with If-Match",
    "list": "GET connections (page of 50)",
    "login": "whole sign-in, as browser and product see it (IdP included)",
    "login_keyhall": "Keyhall's steps of it: authorize + callback + token",
}


# --- the client processes -----------------------------------------------------------------------


@dataclass(frozen=True)
class ApiWork:
    base_url: str
    org_id: str
    token: str
    idp_issuer: str
    start_at: float  # time.time() at which every client begins (the processes need a moment to start)
    deadline: float  # time.time() after which no operation starts
    client: int


@dataclass(frozen=True)
class LoginWork:
    setup: Setup
    start_at: float
    deadline: float
    client: int


@dataclass
class Outcome:
    """What one client process measured: seconds per successful operation, errors per operation."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: dict[str, str] = field(default_factory=dict)
    conflicts: int = 0
    ended: float = 0.0  # time.time() when the last operation ended

    def ok(self, operation: str, seconds: float) -> None:
        self.samples.setdefault(operation, []).append(seconds)

    def failed(self, operation: str, message: str) -> None:
        self.errors[operation] += 1
        self.first_errors.setdefault(operation, message[:300])

    def merge(self, other: Outcome) -> None:
        for operation, values in other.samples.items():
            self.samples.setdefault(operation, []).extend(values)
        self.errors.update(other.errors)
        for operation, message in other.first_errors.items():
            self.first_errors.setdefault(operation, message)
        self.conflicts += other.conflicts
        self.ended = max(self.ended, other.ended)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and ends the pool


def _wait_until(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def _timed(outcome: Outcome, operation: str, call: Callable[[], httpx.Response],
           expected: int) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response: httpx.Response = call()
    except httpx.HTTPError as exc:
        outcome.failed(operation, f"{type(exc).__name__}: {exc}")
        return None
    elapsed = time.perf_counter() - started
    if response.status_code != expected:
        if operation == "patch" and response.status_code == 412:
            outcome.conflicts += 1
            return None
        outcome.failed(operation, f"HTTP {response.status_code}: {response.text[:200]}")
        return None
    outcome.ok(operation, elapsed)
    return response


def api_client(work: ApiWork) -> Outcome:
    """Create, read, patch and list connections of one organization until the deadline."""
    outcome = Outcome()
    prefix = f"c{work.client}-{uuid.uuid4().hex[:6]}"
    connections = f"/v1/organizations/{work.org_id}/connections"
    with httpx.Client(base_url=work.base_url, trust_env=False, timeout=REQUEST_TIMEOUT,
                      headers={"Authorization": f"Bearer {work.token}"}) as api:
        _wait_until(work.start_at)
        n = 0
        while time.time() < work.deadline:
            n += 1
            name = f"{prefix}-{n}"
            create = functools.partial(api.post, connections, json={
                "protocol": "oidc", "name": name, "display_name": f"Load {name}", "domains": [f"{name}.test"],
                "contacts": ["it@example.com"],
                "oidc": {"issuer": work.idp_issuer, "client_id": f"client-{name}", "client_secret": "s"}})
            created = _timed(outcome, "create", create, 201)
            if created is None:
                continue
            path = f"{connections}/{created.json()['id']}"
            etag = created.headers.get("etag", "")
            for _ in range(3):
                read = _timed(outcome, "read", functools.partial(api.get, path), 200)
                if read is not None:
                    etag = read.headers.get("etag", etag)
            for round_ in range(2):
                patch = functools.partial(api.patch, path, headers={"If-Match": etag}, json={
                    "display_name": f"Load {name} r{round_}", "sync_profile": bool(round_ % 2)})
                patched = _timed(outcome, "patch", patch, 200)
                if patched is not None:
                    etag = patched.headers.get("etag", etag)
            _timed(outcome, "list", lambda: api.get(connections, params={"limit": 50}), 200)
    outcome.ended = time.time()
    return outcome


def login_client(work: LoginWork) -> Outcome:
    """Complete sign-ins, each as a fresh browser, every request on a new TCP connection."""
    outcome = Outcome()
    browser = Browser(work.setup)
    browser.http.headers["Connection"] = "close"
    browser.product.headers["Connection"] = "close"
    _wait_until(work.start_at)
    try:
        n = 0
        while time.time() < work.deadline:
            user = work.setup.users[(work.client * 7919 + n) % len(work.setup.users)]
            n += 1
            try:
                timings = browser.login(user)
            except (LoginError, httpx.HTTPError, ValueError, KeyError) as exc:
                outcome.failed("login", f"{type(exc).__name__}: {exc}")
                continue
            outcome.ok("login", timings["login"])
            outcome.ok("login_keyhall", timings["keyhall"])
    finally:
        browser.close()
    outcome.ended = time.time()
    return outcome


# --- set-up -------------------------------------------------------------------------------------


def management_org(base_url: str, instance_token: str, clients: int) -> tuple[str, list[str]]:
    """An organization for the management clients, and one owner key per client."""
    with httpx.Client(base_url=base_url, trust_env=False, timeout=REQUEST_TIMEOUT,
                      headers={"Authorization": f"Bearer {instance_token}"}) as api:
        org = api.post("/v1/organizations", json={"name": f"Load {uuid.uuid4().hex[:8]}"})
        if org.status_code != 201:
            raise BenchError(f"create organization: HTTP {org.status_code} {org.text[:500]}")
        org_id = str(org.json()["id"])
        tokens = []
        for i in range(clients):
            key = api.post(f"/v1/organizations/{org_id}/keys", json={"role": "owner", "name": f"load-{i}"})
            if key.status_code != 201:
                raise BenchError(f"create owner key: HTTP {key.status_code} {key.text[:500]}")
            tokens.append(str(key.json()["token"]))
    return org_id, tokens


# --- reporting ----------------------------------------------------------------------------------


def operation_stats(outcome: Outcome, seconds: float) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for operation in (*API_OPERATIONS, *LOGIN_OPERATIONS):
        values = [v * 1000 for v in outcome.samples.get(operation, [])]
        errors = outcome.errors.get(operation, 0)
        if not values and not errors:
            continue
        stats[operation] = {
            "count": len(values), "errors": errors,
            "per_second": round(len(values) / seconds, 2) if seconds > 0 else 0.0,
            "p50_ms": round(percentile(values, 50), 1) if values else None,
            "p99_ms": round(percentile(values, 99), 1) if values else None,
            "max_ms": round(max(values), 1) if values else None,
        }
    return stats


def report(args: argparse.Namespace, outcome: Outcome, seconds: float, routed: dict[int, int],
           load_before: tuple[float, float, float], out: Any) -> dict[str, Any]:
    stats = operation_stats(outcome, seconds)
    total_errors = sum(outcome.errors.values())
    out("")
    out(f"Keyhall load benchmark: {args.instances} instances behind a round-robin proxy, PostgreSQL, "
        f"{args.api_clients} API + {args.login_clients} login client processes, {seconds:.1f} s, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    out("")
    out(f"{'operation':<14} {'count':>7} {'ops/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'errors':>7}  what")
    out(f"{'-' * 14} {'-' * 7} {'-' * 8} {'-' * 9} {'-' * 9} {'-' * 9} {'-' * 7}  {'-' * 40}")
    for operation, row in stats.items():
        timings = " ".join(fmt_ms(row[name], 9) for name in ("p50_ms", "p99_ms", "max_ms"))
        out(f"{operation:<14} {row['count']:>7} {row['per_second']:>8.2f} {timings} {row['errors']:>7}  "
            f"{OPERATION_LABELS[operation]}")
    out("")
    api_ops = sum(len(outcome.samples.get(op, [])) for op in API_OPERATIONS)
    out(f"management API: {api_ops / seconds:.1f} requests/s; sign-ins: "
        f"{len(outcome.samples.get('login', [])) / seconds:.2f}/s; stale If-Match (412): {outcome.conflicts}")
    out("proxy: connections per instance " + ", ".join(f"#{i}: {n}" for i, n in sorted(routed.items())))
    for operation, message in outcome.first_errors.items():
        out(f"first {operation} error: {message}")
    out(f"machine load (1 min) before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
        "CPUs (the IdP, the instances, the proxy and the clients share them)")
    return {"bench": "load", "seconds": round(seconds, 2), "instances": args.instances,
            "api_clients": args.api_clients, "login_clients": args.login_clients, "operations": stats,
            "errors": total_errors, "stale_if_match": outcome.conflicts, "routed": routed,
            "nproc": os.cpu_count(), "python": platform.python_version()}


# --- entry point ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the clients run (bounded: ≤ 600)")
    parser.add_argument("--instances", type=int, default=2, help="Keyhall processes behind the proxy")
    parser.add_argument("--api-clients", type=int, default=3, help="management API client processes")
    parser.add_argument("--login-clients", type=int, default=2, help="sign-in client processes")
    parser.add_argument("--users", type=int, default=50, help="distinct IdP accounts the sign-ins cycle through")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE,
                        help="PostgreSQL server on 127.0.0.1; a fresh database is created there and dropped")
    parser.add_argument("--server-log-level", default="WARNING", help="Keyhall's KEYHALL_LOG_LEVEL")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    if args.instances < 1 or args.api_clients < 0 or args.login_clients < 0 or args.users < 1:
        parser.error("--instances and --users must be at least 1, the client counts at least 0")
    if args.api_clients + args.login_clients == 0:
        parser.error("give at least one client")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    from tests.support.servers import TcpProxy  # the round-robin balancer the multi-instance tests use

    def out(line: str) -> None:
        print(line, flush=True)

    children: list[Child] = []
    try:
        with tempfile.TemporaryDirectory(prefix="keyhall-load-") as tmp, \
                fresh_database(Path(tmp), args.database_url) as (database_url, _label), TcpProxy() as proxy:
            workdir = Path(tmp)
            try:
                domain = f"load-{uuid.uuid4().hex[:8]}.test"
                accounts = idp_accounts(domain, args.users)
                idp, issuer = start_idp(workdir, accounts)
                children.append(idp)
                env = keyhall_env(workdir, database_url, proxy.url, args.server_log_level)  # one secret key
                token = str(keyhall_cli(env, workdir, "key", "create", "--instance")["token"])  # migrates
                ports = []
                for index in range(args.instances):
                    home = workdir / f"keyhall-{index}"
                    home.mkdir()
                    port = _free_port()
                    instance_env = {**env, "KEYHALL_DATA_DIR": str(home / "data")}
                    children.append(start_keyhall(home, instance_env, port))
                    ports.append(port)
                proxy.set_backends([("127.0.0.1", port) for port in ports])
                setup = make_setup(proxy.url, issuer, token, domain, tuple(str(a["sub"]) for a in accounts),
                                   "openid email profile groups")
                org_id, owner_tokens = management_org(proxy.url, token, args.api_clients)
                out(f"set up: IdP {issuer}, {args.instances} Keyhall instances on ports {ports} behind {proxy.url}; "
                    f"{args.api_clients} API + {args.login_clients} login clients for {args.seconds:g} s")

                load_before = os.getloadavg()
                routed_before = Counter(proxy.routed)
                context = multiprocessing.get_context("spawn")
                clients = args.api_clients + args.login_clients
                with ProcessPoolExecutor(max_workers=clients, mp_context=context,
                                         initializer=_ignore_sigint) as pool:
                    start_at = time.time() + STARTUP_ALLOWANCE
                    deadline = start_at + args.seconds
                    futures = [pool.submit(api_client, ApiWork(proxy.url, org_id, owner_tokens[i], issuer,
                                                               start_at, deadline, i)) for i in range(args.api_clients)]
                    futures += [pool.submit(login_client, LoginWork(setup, start_at, deadline, i))
                                for i in range(args.login_clients)]
                    total = Outcome()
                    for future in futures:
                        total.merge(future.result(timeout=STARTUP_ALLOWANCE + args.seconds + 4 * REQUEST_TIMEOUT))
                    seconds = total.ended - start_at
                routed = {i: proxy.routed[i] - routed_before[i] for i in range(args.instances)}
                summary = report(args, total, max(seconds, 0.001), routed, load_before, out)
                for child in children:
                    child.check_alive()
            finally:
                for child in reversed(children):
                    child.stop()
    except BenchError as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.load: interrupted; processes stopped and temporary files removed", file=sys.stderr)
        return 130
    out(json.dumps(summary, sort_keys=True))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
