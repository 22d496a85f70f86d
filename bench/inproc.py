"""The application's own CPU per request, without sockets or HTTP parsing: Keyhall's ASGI app called
directly on uvloop, one request at a time, beside the bare route's app (``bench.bare``) called the same
way.

    .venv/bin/python -m bench.inproc                      # SQLite in a temporary directory
    .venv/bin/python -m bench.inproc --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python -m bench.inproc --profile get        # and a cProfile of one row, by internal time

Rows: ``bare`` (the floor), ``healthz`` (Keyhall's middleware chain and routing around a trivial
handler), ``get`` (an instance key's GET of a connection: key, probe, render) and ``organization``
(GET of an organization). CPU is this process's clock (``time.process_time``: every thread, so the
thread pool's work on PostgreSQL counts), per request, median of ``--rounds`` rounds. What ``bench.suite``
measures over real sockets is these figures plus the HTTP server's share (about the bare route's
whole figure there), so a change to the request path shows here with far less noise. Rate limits are
off, as in ``bench.suite``; the lifespan (background jobs) is not started.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop
from fastapi.testclient import TestClient
from starlette.types import ASGIApp

import bench.bare
from bench.login import fresh_database
from keyhall.app import create_app
from keyhall.core import org_service
from keyhall.core.access import SYSTEM
from keyhall.core.connection_service import Context
from keyhall.runtime import Runtime, utcnow
from keyhall.security.secrets import new_key
from keyhall.settings import Settings

Asgi = ASGIApp
METADATA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "saml" / "metadata-valid.xml"


def scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}


async def call(app: Asgi, path: str, headers: list[tuple[bytes, bytes]], body: bytes | None = None) -> None:
    """One request: a GET, or with ``body`` a PATCH of that JSON body."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": body or b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    method = "GET" if body is None else "PATCH"
    if body is not None:
        headers = [*headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await app(scope(path, headers, method), receive, send)
    if not sent or sent[0].get("status") != 200:
        raise RuntimeError(f"{method} {path} did not answer 200: {sent[:1]}")


@contextmanager
def keyhall_app(workdir: Path, database_url: str) -> Iterator[tuple[Asgi, dict[str, str], list[tuple[bytes, bytes]]]]:
    """The app on a fresh database, an organization with one SAML connection, and an instance key."""
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
            org = client.post("/v1/organizations", json={"name": "In-process bench"}, headers=auth).json()
            conn = client.post(f"/v1/organizations/{org['id']}/connections", headers=auth, json={
                "protocol": "saml", "name": "inproc", "domains": ["inproc.example"],
                "saml": {"metadata_xml": METADATA.read_text()}}).json()
        paths = {"healthz": "/healthz", "get": f"/v1/organizations/{org['id']}/connections/{conn['id']}",
                 "organization": f"/v1/organizations/{org['id']}",
                 "patch": f"/v1/organizations/{org['id']}/connections/{conn['id']}"}
        yield app, paths, [(b"authorization", auth["authorization"].encode()), (b"host", b"keyhall.test")]
    finally:
        runtime.database.dispose()


def patch_body(index: int) -> bytes:
    """A PATCH of the connection's display name, a different one each time (as ``bench.suite``'s)."""
    return b'{"display_name": "Bench %d"}' % (index % 1000)


async def measure(app: Asgi, path: str, headers: list[tuple[bytes, bytes]], requests: int, rounds: int,
                  body: Callable[[int], bytes] | None = None) -> float:
    for index in range(max(100, requests // 10)):  # warm: caches, compiled statements, pooled connections
        await call(app, path, headers, body(index) if body else None)
    per_round = []
    for _ in range(rounds):
        bodies = [body(index) for index in range(requests)] if body else [None] * requests
        started = time.process_time()
        for each in bodies:
            await call(app, path, headers, each)
        per_round.append((time.process_time() - started) / requests)
    return statistics.median(per_round)


ROWS = ("bare", "healthz", "get", "organization", "patch")


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
            keyhall_app(Path(tmp), database_url) as (app, paths, headers):
        rows: list[tuple[str, Asgi, str, list[tuple[bytes, bytes]]]] = [
            ("bare", bench.bare.app, "/bare", []), ("healthz", app, paths["healthz"], headers),
            ("get", app, paths["get"], headers), ("organization", app, paths["organization"], headers),
            ("patch", app, paths["patch"], headers)]

        async def run() -> dict[str, float]:
            return {name: await measure(target, path, hdrs, args.requests, args.rounds,
                                        patch_body if name == "patch" else None)
                    for name, target, path, hdrs in rows if name in args.rows}

        figures = uvloop.run(run())
        print(f"bench.inproc: database {label}, {args.requests} requests x {args.rounds} rounds, Python "
              f"{sys.version.split()[0]}; CPU per request of this process (median round)")
        for name, seconds in figures.items():
            ratio = seconds / figures["bare"]
            print(f"  {name:13s} {seconds * 1e6:8.1f} us   {ratio:5.1f}x the bare app")
        if args.profile:
            target_path = paths[args.profile]
            profiler = cProfile.Profile()

            async def profiled() -> None:
                for index in range(args.requests):
                    await call(app, target_path, headers, patch_body(index) if args.profile == "patch" else None)

            profiler.enable()
            uvloop.run(profiled())
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
