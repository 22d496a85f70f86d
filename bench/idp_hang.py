"""Hung-IdP benchmark: liveness and another tenant's sign-ins while one organization's IdP hangs.

One command::

    .venv/bin/python -m bench.idp_hang --hanging 100 --logins 40
    .venv/bin/python -m bench.idp_hang --database-url postgresql://postgres@127.0.0.1:5432/postgres

It starts, on 127.0.0.1, a Keyhall server (``python -m keyhall serve``, its own process) on a fresh
database, the npm ``oidc-provider`` for a healthy organization, and an identity provider whose token
endpoint reads each request and never answers (``tests.support.hostile_idp`` in ``token_hangs``
mode) for a second organization. Then, in phases:

1. ``quiet``: ``--logins`` complete sign-ins of the healthy organization (authorize, IdP, callback,
   code redemption), with ``/healthz`` polled every 20 ms throughout;
2. ``hang``: the same, while ``--hanging`` people of the other organization keep coming back to
   Keyhall's callback at once (each one started again as soon as it is answered), every callback
   waiting on the hung token endpoint — or refused at once by the per-IdP bulkhead
   (``KEYHALL_IDP_MAX_CONCURRENT_CALLS``).

It prints p50/p99 of ``/healthz`` and of the healthy organization's whole sign-in in both phases,
and what the hung organization's callbacks got (refused at once, or held until the IdP timeout).
Not a test: nothing is asserted, the figures depend on the machine. The run is bounded by
``--max-seconds`` per phase; processes are ended by PID and temporary files removed on exit.
The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.support.hostile_idp import HostileIdp, Mode

from bench.login import (
    REQUEST_TIMEOUT,
    BenchError,
    Browser,
    Child,
    Phase,
    expect_status,
    fmt_ms,
    free_port,
    fresh_database,
    idp_accounts,
    keyhall_cli,
    keyhall_env,
    make_setup,
    percentile,
    run_phase,
    start_idp,
    start_keyhall,
    stop_on_sigterm,
)


@dataclass
class Samples:
    """Latencies (seconds) and failures of one kind of request."""

    seconds: list[float] = field(default_factory=list)
    failures: int = 0

    def row(self, name: str, label: str) -> str:
        ms = [s * 1000 for s in self.seconds]
        cells = " ".join(fmt_ms(percentile(ms, q) if ms else None) for q in (50, 99))
        return f"{name:<22} {len(ms):>6} {cells} {fmt_ms(max(ms) if ms else None)} {self.failures:>6}  {label}"

    def summary(self) -> dict[str, Any]:
        ms = [s * 1000 for s in self.seconds]
        return {"count": len(ms), "failures": self.failures,
                "p50_ms": round(percentile(ms, 50), 2) if ms else None,
                "p99_ms": round(percentile(ms, 99), 2) if ms else None,
                "max_ms": round(max(ms), 2) if ms else None}


class Poller:
    """``GET /healthz`` every ``interval`` seconds from a thread, into ``samples``."""

    def __init__(self, url: str, interval: float = 0.02):
        self.url, self.interval = url, interval
        self.samples = Samples()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz", daemon=True)

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT) as client:
            while not self._stop.wait(self.interval):
                started = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.samples.seconds.append(time.perf_counter() - started)
                else:
                    self.samples.failures += 1

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT + 1)


@dataclass(frozen=True)
class HungTenant:
    keyhall_url: str
    domain: str
    client_id: str
    redirect_uri: str


def make_hung_tenant(keyhall_url: str, idp: HostileIdp, token: str) -> HungTenant:
    domain = f"hung-{uuid.uuid4().hex[:8]}.test"
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=keyhall_url, headers=headers, trust_env=False, timeout=REQUEST_TIMEOUT) as api:
        org = expect_status(api.post("/v1/organizations", json={"name": f"Hung {domain}"}), 201, "organization")
        conn = expect_status(api.post(f"/v1/organizations/{org['id']}/connections", json={
            "protocol": "oidc", "name": "hung-idp", "domains": [domain],
            "oidc": {"issuer": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret}}),
            201, "connection to the hung IdP")
        idp.allow_redirect_uri(conn["redirect_uri"])
        redirect_uri = f"http://127.0.0.1:{free_port()}/product/callback"
        app = expect_status(api.post("/v1/applications", json={"name": f"Hung product {domain}",
                                                              "redirect_uris": [redirect_uri]}), 201, "application")
    return HungTenant(keyhall_url, domain, str(app["client_id"]), redirect_uri)


def hang_forever(tenant: HungTenant, stop: threading.Event, refused: Samples, held: Samples,
                 timeout: float, pause: float) -> None:
    """One person of the hung organization, over and over: authorize, the IdP, Keyhall's callback;
    after each answer the person reads the page for ``pause`` seconds, then tries again."""
    with httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT * 4) as browser:
        while not stop.is_set():
            browser.cookies.clear()
            try:
                started = browser.get(f"{tenant.keyhall_url}/oauth2/authorize", params={
                    "response_type": "code", "client_id": tenant.client_id, "redirect_uri": tenant.redirect_uri,
                    "scope": "openid", "state": uuid.uuid4().hex, "login_hint": f"someone@{tenant.domain}",
                    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    "code_challenge_method": "S256"})
                at_idp = browser.get(started.headers["location"])
                mark = time.perf_counter()
                browser.get(at_idp.headers["location"])
                seconds = time.perf_counter() - mark
            except (httpx.HTTPError, KeyError):
                refused.failures += 1
                stop.wait(0.1)
                continue
            (held if seconds >= timeout * 0.8 else refused).seconds.append(seconds)
            stop.wait(pause)


def login_samples(phase: Phase) -> Samples:
    return Samples(seconds=[s["login"] for s in phase.samples], failures=len(phase.errors))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idp_hang", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--hanging", type=int, default=100, help="sign-ins kept waiting on the hung IdP")
    parser.add_argument("--logins", type=int, default=40, help="healthy sign-ins measured per phase")
    parser.add_argument("--concurrency", type=int, default=2, help="healthy simulated browsers (threads)")
    parser.add_argument("--idp-timeout", type=float, default=5.0, help="KEYHALL_IDP_TIMEOUT_SECONDS")
    parser.add_argument("--cap", type=int, default=None,
                        help="KEYHALL_IDP_MAX_CONCURRENT_CALLS (default: the server's own default)")
    parser.add_argument("--retry-after", type=float, default=5.0,
                        help="seconds a hung-IdP person waits after an answer before trying again")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time budget of each phase")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server on 127.0.0.1; a fresh database is made there. Default: SQLite")
    args = parser.parse_args(argv)
    if min(args.hanging, args.logins, args.concurrency) < 1 or not 0 < args.max_seconds <= 600:
        parser.error("--hanging, --logins, --concurrency must be >= 1; --max-seconds in (0, 600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    children: list[Child] = []
    stop = threading.Event()
    summary: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="keyhall-bench-") as tmp, \
                fresh_database(Path(tmp), args.database_url) as (database_url, database), HostileIdp() as hung_idp:
            workdir = Path(tmp)
            domain = f"bench-{uuid.uuid4().hex[:8]}.test"
            accounts = idp_accounts(domain, 20)
            try:
                idp, issuer = start_idp(workdir, accounts)
                children.append(idp)
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                env = keyhall_env(workdir, database_url, url, "WARNING")
                env["KEYHALL_IDP_TIMEOUT_SECONDS"] = str(args.idp_timeout)
                if args.cap is not None:
                    env["KEYHALL_IDP_MAX_CONCURRENT_CALLS"] = str(args.cap)
                token = str(keyhall_cli(env, workdir, "key", "create", "--instance")["token"])
                children.append(start_keyhall(workdir, env, port))
                setup = make_setup(url, issuer, token, domain, tuple(str(a["sub"]) for a in accounts),
                                   "openid email profile")
                hung = make_hung_tenant(url, hung_idp, token)
                hung_idp.mode = Mode.TOKEN_HANGS

                def user_for(index: int) -> str:
                    return setup.users[index % len(setup.users)]

                run_phase(lambda: Browser(setup), user_for, 4, args.concurrency, time.monotonic() + 30, 5, stop)
                phases: dict[str, tuple[Samples, Samples]] = {}
                errors: dict[str, list[str]] = {}
                refused, held = Samples(), Samples()
                for name in ("quiet", "hang"):
                    hang_stop = threading.Event()
                    hangers = [threading.Thread(target=hang_forever, args=(hung, hang_stop, refused, held,
                                                                           args.idp_timeout, args.retry_after),
                                                daemon=True)
                               for _ in range(args.hanging if name == "hang" else 0)]
                    for thread in hangers:
                        thread.start()
                    time.sleep(1.0 if hangers else 0)  # let the hung callbacks pile up first
                    with Poller(url) as poller:
                        phase = run_phase(lambda: Browser(setup), user_for, args.logins, args.concurrency,
                                          time.monotonic() + args.max_seconds, args.logins, stop)
                    hang_stop.set()
                    for thread in hangers:
                        thread.join(timeout=args.idp_timeout * 3 + REQUEST_TIMEOUT)
                    phases[name] = (poller.samples, login_samples(phase))
                    errors[name] = phase.errors[:1]
            finally:
                for child in reversed(children):
                    child.stop()
    except BenchError as exc:
        print(f"bench.idp_hang: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.idp_hang: interrupted; processes stopped and temporary files removed", file=sys.stderr)
        return 130

    print(f"\nKeyhall hung-IdP benchmark: {args.hanging} sign-ins kept hanging on one IdP "
          f"(timeout {args.idp_timeout:g} s, cap {args.cap or 'default'}), database {database}, "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'':<22} {'count':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>6}  what")
    for name, (health, logins) in phases.items():
        print(health.row(f"healthz/{name}", "GET /healthz every 20 ms"))
        print(logins.row(f"other-login/{name}", "another organization's whole sign-in"))
    print(refused.row("hung-callback/refused", "answered at once: the IdP is not answering (idp_busy)"))
    print(held.row("hung-callback/held", "waited on the hung IdP until its timeout"))
    for name, first in errors.items():
        if first:
            print(f"first failed sign-in ({name}): {first[0][:300]}")
    summary = {"bench": "idp_hang", "hanging": args.hanging, "idp_timeout": args.idp_timeout, "cap": args.cap,
               "database": database, "nproc": os.cpu_count(),
               **{f"{kind}_{name}": samples.summary() for name, (health, logins) in phases.items()
                  for kind, samples in (("healthz", health), ("other_login", logins))},
               "hung_refused": refused.summary(), "hung_held": held.summary()}
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
