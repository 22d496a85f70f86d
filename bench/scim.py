"""Directory sync benchmark: a real ``keyhall serve`` driven through its SCIM API, on 127.0.0.1.

One command::

    .venv/bin/python -m bench.scim
    .venv/bin/python -m bench.scim --users 10000 --members 1000 --lookup-users 100000 --lookups 2000
    .venv/bin/python -m bench.scim --database-url postgresql://postgres@127.0.0.1:5432/postgres

Three phases, against issue 13's targets:

1. **initial sync** — ``--users`` ``POST /Users`` (Okta-shaped bodies) from ``--concurrency`` keep-alive
   clients, as an IdP's first push does; wall time (target ≤ 30 s for 10,000).
2. **group PATCH** — one ``PATCH /Groups/{id}`` adding ``--members`` members (target ≤ 1 s), repeated
   ``--patch-repeats`` times with fresh members each time; the slowest is reported.
3. **userName lookups** — the directory is grown to ``--lookup-users`` users, then
   ``GET /Users?filter=userName eq "…"`` for random users from one client, ``--lookups`` times; p50/p99
   (target p99 ≤ 5 ms). The growing step does **not** go through SCIM: the extra users are inserted in
   bulk straight through Keyhall's storage layer (``SqlDirectoryUsers.add_many``), which is seeding,
   not what is measured.

Keyhall runs in its own process on a fresh database (a SQLite file, or a new PostgreSQL database
dropped afterwards), rate limits off. Beside wall time, each phase reports the CPU the server
process spent (``bench.proc.cpu_seconds``): on a machine shared with other work, wall time grows
with the load (printed), while CPU per operation moves little. The sync and the lookups also report
this driver's own CPU per request (its HTTP clients share the machine's cores with the server). The
last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from bench import login as login_bench
from bench.login import (
    BenchError,
    Child,
    free_port,
    fresh_database,
    keyhall_cli,
    keyhall_env,
    percentile,
    start_keyhall,
)
from bench.proc import cpu_seconds, reference_loop_seconds
from bench.suite import start_bare

SCIM_JSON = "application/scim+json"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def user_body(index: int) -> dict[str, Any]:
    name = f"user{index:06d}@bench.example"
    return {"schemas": [USER_URN], "userName": name, "externalId": f"00u{index:08d}", "active": True,
            "name": {"givenName": f"Given{index}", "familyName": "Bench"}, "displayName": f"Given{index} Bench",
            "emails": [{"primary": True, "value": name, "type": "work"}], "password": "ignored-by-keyhall"}


class KeepAlive:
    """One keep-alive HTTP/1.1 connection to the SCIM base URL, written and read by hand on a
    socket: a tenth of httpx's CPU per request (a fifth of ``http.client``'s), whose cost would
    otherwise be measured with the server's (both run on this machine's cores, and a lookup's
    latency includes the client's work). It reads what Keyhall answers: a status line, headers
    and a ``Content-Length`` body."""

    def __init__(self, base: str, token: str):
        url = urlsplit(base)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        self.socket = socket.create_connection((host, port), timeout=60)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.socket.makefile("rb")
        self.prefix = url.path.rstrip("/")
        self.head = (f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: {SCIM_JSON}\r\n"
                     f"Accept: {SCIM_JSON}\r\n")

    def request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
                ) -> tuple[int, bytes]:
        target = self.prefix + path + (f"?{urlencode(params)}" if params else "")
        payload = json.dumps(body).encode() if body is not None else b""
        self.socket.sendall(f"{method} {target} HTTP/1.1\r\n{self.head}Content-Length: {len(payload)}\r\n\r\n"
                            .encode() + payload)
        status = int(self.reader.readline().split(b" ", 2)[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise BenchError("a chunked response: this client reads Content-Length bodies only")
        return status, self.reader.read(length)

    def close(self) -> None:
        self.reader.close()
        self.socket.close()


def initial_sync(base: str, token: str, count: int, concurrency: int) -> tuple[float, list[str]]:
    """POST ``count`` users from ``concurrency`` threads; (wall seconds, created ids in order)."""
    ids: list[str | None] = [None] * count
    errors: list[str] = []
    next_index = iter(range(count))
    lock = threading.Lock()

    def work() -> None:
        client = KeepAlive(base, token)
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                status, body = client.request("POST", "/Users", user_body(index))
                if status != 201:
                    errors.append(f"{status} {body[:200]!r}")
                    return
                ids[index] = json.loads(body)["id"]
        finally:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise BenchError(f"initial sync failed: {errors[0]}")
    return seconds, [i for i in ids if i is not None]


def group_patches(client: httpx.Client, user_ids: list[str], members: int, repeats: int) -> list[float]:
    made = client.post("/Groups", json={"schemas": [GROUP_URN], "displayName": "Everyone"})
    if made.status_code != 201:
        raise BenchError(f"creating the group failed: {made.text[:300]}")
    group_id = made.json()["id"]
    timings = []
    for repeat in range(repeats):
        chunk = user_ids[repeat * members:(repeat + 1) * members]
        if len(chunk) < members:
            break
        body = {"schemas": [PATCH_URN],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": u} for u in chunk]}]}
        started = time.perf_counter()
        response = client.patch(f"/Groups/{group_id}", json=body,
                                params={"excludedAttributes": "members"})
        timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise BenchError(f"PATCH failed: {response.status_code} {response.text[:300]}")
    listed = client.get("/Groups", params={"filter": f'id eq "{group_id}"', "excludedAttributes": "members"})
    if listed.json()["totalResults"] != 1:
        raise BenchError("the group is not found by id")
    return timings


def grow(database_url: str, secret_keys: str, directory_id: str, organization_id: str, start: int,
         total: int) -> float:
    """Insert users ``start``..``total`` in bulk straight through the storage layer (seeding only)."""
    from keyhall.core.directories import DirectoryUser
    from keyhall.security.secrets import SecretBox, parse_key_list
    from keyhall.storage.database import Database

    started = time.perf_counter()
    database = Database(database_url, SecretBox(parse_key_list(secret_keys)))
    try:
        now = datetime.now(UTC)
        batch: list[DirectoryUser] = []
        for index in range(start, total):
            body = user_body(index)
            body.pop("password")
            batch.append(DirectoryUser(
                id=str(uuid.uuid4()), organization_id=organization_id, directory_id=directory_id,
                user_name=body["userName"], external_id=body["externalId"], active=True,
                attributes={k: v for k, v in body.items() if k != "schemas"}, email=body["userName"],
                name=body["displayName"], given_name=body["name"]["givenName"], family_name="Bench",
                created_at=now, updated_at=now))
            if len(batch) == 10_000 or index == total - 1:
                with database.unit_of_work() as uow:
                    uow.directory_users.add_many(batch)
                    uow.commit()
                batch = []
    finally:
        database.dispose()
    return time.perf_counter() - started


def lookups(client: KeepAlive, total: int, count: int) -> list[float]:
    rng = random.Random(13)
    timings = []
    for _ in range(count):
        name = f"USER{rng.randrange(total):06d}@bench.example"  # userName matches case-insensitively
        started = time.perf_counter()
        status, body = client.request("GET", "/Users", params={"filter": f'userName eq "{name}"'})
        timings.append(time.perf_counter() - started)
        if status != 200 or json.loads(body)["totalResults"] != 1:
            raise BenchError(f"lookup of {name} failed: {status} {body[:300]!r}")
    return timings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000, help="users of the initial sync (SCIM POSTs)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads of the initial sync")
    parser.add_argument("--members", type=int, default=1_000, help="members added by one group PATCH")
    parser.add_argument("--patch-repeats", type=int, default=3)
    parser.add_argument("--lookup-users", type=int, default=100_000, help="directory size for the lookups")
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=1, help="keyhall serve --workers N")
    parser.add_argument("--floor-posts", type=int, default=3000,
                        help="POSTs to the bare route after the run, for the floor (0: none)")
    parser.add_argument("--database-url", default=None, help="a postgresql:// server on 127.0.0.1 (default SQLite)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="keyhall-bench-scim-") as tmp:
        workdir = Path(tmp)
        with fresh_database(workdir, args.database_url) as (database_url, label):
            port = free_port()
            env = keyhall_env(workdir, database_url, f"http://127.0.0.1:{port}", "warning")
            token = str(keyhall_cli(env, workdir, "key", "create", "--instance")["token"])
            if args.workers > 1:  # every worker imports the app: on a loaded machine 30 s may not do
                login_bench.STARTUP_TIMEOUT = max(login_bench.STARTUP_TIMEOUT, 60.0 * args.workers)
            server: Child = start_keyhall(workdir, env, port,
                                          ["--workers", str(args.workers)] if args.workers > 1 else [])
            bare: Child | None = None
            try:
                summary = run(args, f"http://127.0.0.1:{port}", token, database_url, label, env,
                              server.process.pid)
                server.stop()
                if args.floor_posts:
                    bare, bare_url = start_bare(workdir)
                    summary.update(floor(args, bare_url, bare.process.pid, summary))
            finally:
                server.stop()
                if bare is not None:
                    bare.stop()
    print(json.dumps(summary))
    return 0


def floor(args: argparse.Namespace, bare_url: str, bare_pid: int, summary: dict[str, Any]) -> dict[str, Any]:
    """The same driver's POSTs, at the same concurrency, to a bare FastAPI route that parses the JSON
    body and answers it (``bench.bare``), after Keyhall has stopped: the CPU of serving a request at
    all on this machine at this moment, beside which the sync's CPU per user reads the same on a
    busy machine and a quiet one."""
    initial_sync(f"{bare_url}/bare", "floor", min(200, args.floor_posts), args.concurrency)  # warm-up
    cpu_before = cpu_seconds(bare_pid)
    seconds, _ = initial_sync(f"{bare_url}/bare", "floor", args.floor_posts, args.concurrency)
    per_post = (cpu_seconds(bare_pid) - cpu_before) / args.floor_posts * 1000
    ratio = summary["sync_cpu_ms_per_user"] / per_post if per_post else float("nan")
    print(f"floor: a bare FastAPI POST of the same bodies, {args.floor_posts} from {args.concurrency} clients: "
          f"CPU {per_post:.2f} ms per request ({args.floor_posts / seconds:.0f}/s wall); the sync's CPU per user "
          f"is {ratio:.1f}x the floor", flush=True)
    return {"floor_cpu_ms_per_post": round(per_post, 3), "sync_cpu_x_floor": round(ratio, 2)}


def run(args: argparse.Namespace, url: str, instance_token: str, database_url: str, label: str,
        env: dict[str, str], server_pid: int) -> dict[str, Any]:
    with httpx.Client(base_url=url, trust_env=False, timeout=30,
                      headers={"Authorization": f"Bearer {instance_token}"}) as api:
        org = api.post("/v1/organizations", json={"name": "SCIM bench"}).json()
        made = api.post(f"/v1/organizations/{org['id']}/directories", json={"name": "Bench", "provider": "okta"})
        if made.status_code != 201:
            raise BenchError(f"creating the directory failed: {made.text[:300]}")
    directory = made.json()
    base = directory["scim_base_url"]
    print(f"database: {label}; {args.workers} worker(s); initial sync of {args.users} users through SCIM "
          f"({args.concurrency} clients)...", flush=True)
    cpu_before, driver_before = cpu_seconds(server_pid), time.process_time()
    sync_seconds, ids = initial_sync(base, directory["token"], args.users, args.concurrency)
    sync_cpu = cpu_seconds(server_pid) - cpu_before
    sync_driver = time.process_time() - driver_before
    print(f"  {sync_seconds:.1f} s wall ({args.users / sync_seconds:.0f} users/s; target <= 30 s for 10,000); "
          f"server CPU {sync_cpu:.1f} s ({sync_cpu / args.users * 1000:.2f} ms per user); "
          f"this driver's CPU {sync_driver / args.users * 1000:.2f} ms per user; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    headers = {"Authorization": f"Bearer {directory['token']}", "Content-Type": SCIM_JSON}
    with httpx.Client(base_url=base, trust_env=False, timeout=60, headers=headers) as client:
        cpu_before = cpu_seconds(server_pid)
        patches = group_patches(client, ids, args.members, args.patch_repeats)
        patch_cpu = (cpu_seconds(server_pid) - cpu_before) / max(len(patches), 1)
        print(f"PATCH adding {args.members} members: " + ", ".join(f"{t * 1000:.0f} ms" for t in patches)
              + f" wall (target <= 1 s); server CPU {patch_cpu * 1000:.0f} ms per PATCH", flush=True)
        seeded = 0.0
        if args.lookup_users > args.users:
            print(f"seeding {args.lookup_users - args.users} more users in bulk through the storage layer "
                  "(not through SCIM; not measured)...", flush=True)
            seeded = grow(database_url, env["KEYHALL_SECRET_KEYS"], directory["id"], directory["organization_id"],
                          args.users, args.lookup_users)
        total = max(args.lookup_users, args.users)
    looking = KeepAlive(base, directory["token"])
    try:
        lookups(looking, total, 50)  # warm-up
        cpu_before, driver_before = cpu_seconds(server_pid), time.process_time()
        timings = lookups(looking, total, args.lookups)
        lookup_cpu = (cpu_seconds(server_pid) - cpu_before) / args.lookups
        lookup_driver = (time.process_time() - driver_before) / args.lookups
    finally:
        looking.close()
    p50, p99 = percentile(timings, 50) * 1000, percentile(timings, 99) * 1000
    print(f"GET /Users?filter=userName eq ... at {total} users: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"(target p99 <= 5 ms); server CPU {lookup_cpu * 1000:.2f} ms per lookup; "
          f"this driver's CPU {lookup_driver * 1000:.2f} ms per lookup; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    reference = reference_loop_seconds()
    print(f"reference loop {reference:.3f} s (bench.proc.reference_loop_seconds: the machine's speed now)", flush=True)
    return {"database": label, "workers": args.workers, "users": args.users, "initial_sync_s": round(sync_seconds, 2),
            "patch_members": args.members, "patch_ms_max": round(max(patches) * 1000, 1) if patches else None,
            "lookup_users": total, "lookup_p50_ms": round(p50, 2), "lookup_p99_ms": round(p99, 2),
            "seed_s": round(seeded, 1), "sync_cpu_ms_per_user": round(sync_cpu / args.users * 1000, 2),
            "patch_cpu_ms": round(patch_cpu * 1000, 1), "lookup_cpu_ms": round(lookup_cpu * 1000, 2),
            "driver_cpu_ms_per_user": round(sync_driver / args.users * 1000, 2),
            "driver_cpu_ms_per_lookup": round(lookup_driver * 1000, 2),
            "load_average": round(os.getloadavg()[0], 1), "reference_loop_s": round(reference, 3)}


if __name__ == "__main__":
    sys.exit(main())
