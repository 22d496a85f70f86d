"""The application's own CPU per request, without sockets or HTTP parsing: Keyhall's ASGI app called
directly on uvloop, one request at a time, beside the bare route's app (``bench.bare``) called the same
way.

    .venv/bin/python -m bench.inproc                      # SQLite in a temporary directory
    .venv/bin/python -m bench.inproc --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python -m bench.inproc --profile get        # and a cProfile of one row, by internal time
    .venv/bin/python -m bench.inproc --rows patch,token   # some rows only (bare always runs)

Rows: ``bare`` (the floor), ``healthz`` (Keyhall's middleware chain and routing around a trivial
handler), ``get`` (an instance key's GET of a connection: key, probe, render), ``organization`` (GET of
an organization), ``patch`` (PATCH of the connection's display name, a different one each time) and
``token`` (``POST /oauth2/token`` with HTTP Basic client authentication, redeeming a code issued through
the provider's ``issue_code`` before the clock starts: two signatures, the redemption's statements, one
write transaction). CPU is this process's clock (``time.process_time``: every thread, so the thread
pool's work on PostgreSQL counts), per request, median of ``--rounds`` rounds. What ``bench.suite``
measures over real sockets is these figures plus the HTTP server's share (about the bare route's whole
figure there), so a change to the request path shows here with far less noise. Rate limits are off, as
in ``bench.suite``; the lifespan (background jobs) is not started.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvloop
from fastapi.testclient import TestClient
from starlette.types import ASGIApp

import bench.bare
from bench.login import fresh_database
from keyhall.app import create_app
from keyhall.core import org_service
from keyhall.core.access import SYSTEM
from keyhall.core.connection_service import Context
from keyhall.provider import grants
from keyhall.provider.authorize import AuthorizeRequest
from keyhall.runtime import Runtime, utcnow
from keyhall.security.secrets import new_key
from keyhall.settings import Settings

Asgi = ASGIApp
METADATA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "saml" / "metadata-valid.xml"


def scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}


@dataclass(frozen=True)
class Row:
    """One row: requests to ``path`` of ``app``; with ``bodies`` (n -> n request bodies, made before
    the clock starts), each request sends the next body with ``method`` and ``content_type``."""

    name: str
    app: Asgi
    path: str
    headers: list[tuple[bytes, bytes]]
    method: str = "GET"
    content_type: bytes = b"application/json"
    bodies: Callable[[int], list[bytes]] | None = None

    def prepare(self, n: int) -> list[bytes | None]:
        return list(self.bodies(n)) if self.bodies else [None] * n


async def call(row: Row, body: bytes | None = None) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": body or b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    headers = row.headers
    if body is not None:
        headers = [*headers, (b"content-type", row.content_type), (b"content-length", str(len(body)).encode())]
    await row.app(scope(row.path, headers, row.method), receive, send)
    if not sent or sent[0].get("status") != 200:
        raise RuntimeError(f"{row.method} {row.path} did not answer 200: {sent[:1]}")


@contextmanager
def keyhall_rows(workdir: Path, database_url: str) -> Iterator[list[Row]]:
    """The app on a fresh database (an organization with one SAML connection and one user, an
    application, an instance key) and its rows."""
    settings = Settings(_env_file=None, data_dir=workdir, database_url=database_url,
                        secret_keys=new_key(), public_url="http://keyhall.test", api_rate_limit_per_minute=0,
                        login_rate_limit_per_minute=0)
    runtime = Runtime.build(settings)
    runtime.database.migrate()
    try:
        with runtime.database.unit_of_work() as uow:
            _key, issued = org_service.create_key(uow, Context(principal=SYSTEM, request_id=None, now=utcnow()),
                                                  None, None, "bench.inproc")
        app = create_app(settings, runtime)
        auth = {"authorization": f"Bearer {issued.token}"}
        with TestClient(app) as client:  # the set-up goes through the API, as a caller's would
            org = created(client.post("/v1/organizations", json={"name": "In-process bench"}, headers=auth))
            conn = created(client.post(f"/v1/organizations/{org['id']}/connections", headers=auth, json={
                "protocol": "saml", "name": "inproc", "domains": ["inproc.example"],
                "saml": {"metadata_xml": METADATA.read_text()}}))
            user = created(client.post(f"/v1/organizations/{org['id']}/users", headers=auth,
                                       json={"email": "person@inproc.example", "name": "In Process",
                                             "connection_id": conn["id"]}))
            product = created(client.post("/v1/applications", headers=auth, json={
                "name": "inproc", "redirect_uris": [REDIRECT_URI]}))
        api = [(b"authorization", auth["authorization"].encode()), (b"host", b"keyhall.test")]
        connection = f"/v1/organizations/{org['id']}/connections/{conn['id']}"
        basic = base64.b64encode(f"{product['client_id']}:{product['client_secret']}".encode())
        codes = Codes(runtime, product["client_id"], user["id"], conn["id"])
        yield [Row("bare", bench.bare.app, "/bare", []), Row("healthz", app, "/healthz", api),
               Row("get", app, connection, api), Row("organization", app, f"/v1/organizations/{org['id']}", api),
               Row("patch", app, connection, api, method="PATCH", bodies=patch_bodies),
               Row("token", app, "/oauth2/token", [(b"authorization", b"Basic " + basic), (b"host", b"keyhall.test")],
                   method="POST", content_type=b"application/x-www-form-urlencoded", bodies=codes.bodies)]
    finally:
        runtime.database.dispose()


REDIRECT_URI = "https://product.test/callback"


def created(response: Any) -> dict[str, Any]:
    if response.status_code != 201:
        raise RuntimeError(f"set-up: {response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


def patch_bodies(n: int) -> list[bytes]:
    """PATCHes of the connection's display name, a different one each time (as ``bench.suite``'s)."""
    return [b'{"display_name": "Bench %d"}' % (index % 1000) for index in range(n)]


@dataclass(frozen=True)
class Codes:
    """Token requests: authorization codes issued as a completed sign-in issues them (through the
    provider's ``issue_code``, in one unit of work, before the clock starts), one per request."""

    runtime: Runtime
    client_id: str
    user_id: str
    connection_id: str

    def bodies(self, n: int) -> list[bytes]:
        request = AuthorizeRequest(client_id=self.client_id, redirect_uri=REDIRECT_URI, scope="openid email profile",
                                   state=None, nonce="inproc", code_challenge=None, code_challenge_method=None,
                                   prompt=None, login_hint=None, organization=None, connection=None, domain=None)
        with self.runtime.database.unit_of_work() as uow:
            user = uow.users.get(self.user_id)
            assert user is not None
            codes = [grants.issue_code(uow, request, user, connection_id=self.connection_id, amr=["ext"],
                                       now=utcnow()) for _ in range(n)]
            uow.commit()
        return [urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}).encode()
                for code in codes]


async def measure(row: Row, requests: int, rounds: int) -> float:
    for body in row.prepare(max(100, requests // 10)):  # warm: caches, compiled statements, pooled connections
        await call(row, body)
    per_round = []
    for _ in range(rounds):
        bodies = row.prepare(requests)
        started = time.process_time()
        for body in bodies:
            await call(row, body)
        per_round.append((time.process_time() - started) / requests)
    return statistics.median(per_round)


ROWS = ("bare", "healthz", "get", "organization", "patch", "token")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="a postgresql:// server URL (a new database is made and dropped); default SQLite")
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (default: 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per row; the median is shown (default: 3)")
    parser.add_argument("--rows", type=lambda v: set(v.split(",")), default=set(ROWS),
                        help=f"rows to run, comma-separated (default: all of {','.join(ROWS)}; bare always runs)")
    parser.add_argument("--profile", choices=ROWS[1:], default=None,
                        help="then profile this row with cProfile and print its top functions")
    parser.add_argument("--sort", choices=("tottime", "cumtime"), default="tottime", help="the profile's order")
    parser.add_argument("--top", type=int, default=30, help="functions of the profile shown (default: 30)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")
    if args.rows - set(ROWS):
        parser.error(f"--rows: unknown {','.join(sorted(args.rows - set(ROWS)))}; choose from {','.join(ROWS)}")
    args.rows.add("bare")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="keyhall-inproc-") as tmp, \
            fresh_database(Path(tmp), args.database_url) as (database_url, label), \
            keyhall_rows(Path(tmp), database_url) as rows:
        chosen = [row for row in rows if row.name in args.rows]

        async def run() -> dict[str, float]:
            return {row.name: await measure(row, args.requests, args.rounds) for row in chosen}

        figures = uvloop.run(run())
        print(f"bench.inproc: database {label}, {args.requests} requests x {args.rounds} rounds, Python "
              f"{sys.version.split()[0]}; CPU per request of this process (median round)")
        for name, seconds in figures.items():
            ratio = seconds / figures["bare"]
            print(f"  {name:13s} {seconds * 1e6:8.1f} us   {ratio:5.1f}x the bare app")
        if args.profile:
            row = next(row for row in rows if row.name == args.profile)
            bodies = row.prepare(args.requests)
            profiler = cProfile.Profile()

            async def profiled() -> None:
                for body in bodies:
                    await call(row, body)

            profiler.enable()
            uvloop.run(profiled())
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
