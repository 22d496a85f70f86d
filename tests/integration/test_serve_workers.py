"""``keyhall serve --workers N``: the real command in a subprocess, on a fresh database (a refused
one in process).

The supervising process migrates once and runs the background jobs (domain checker, purge) once;
the N worker processes only serve. SIGTERM stops them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from keyhall.cli import main
from tests.support.database import fresh_database
from tests.support.peers import free_port

STARTUP_TIMEOUT = 45.0  # the workers are new interpreters; a loaded machine is slow to start them


def workers_of(pid: int) -> list[int]:
    """The worker processes uvicorn spawned (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
            found.append(int(entry.name))
    return found


def environ(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
    env.update(KEYHALL_DATA_DIR=str(home / "data"), KEYHALL_DATABASE_URL=database_url, KEYHALL_LOG_LEVEL="INFO",
               PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with fresh_database(tmp_path) as url:
        yield tmp_path, url


def test_workers_share_the_port_and_the_supervisor_migrates_and_runs_the_jobs_once(home: tuple[Path, str]) -> None:
    path, url = home
    port = free_port()
    log, errors = path / "serve.log", path / "serve.err"
    with log.open("wb") as out, errors.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "keyhall", "serve", "--port", str(port), "--workers", "2"],
                                   cwd=path, env=environ(path, url), stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:
            while True:
                assert process.poll() is None, log.read_text() + errors.read_text()
                try:
                    if http.get("/readyz").status_code == 200 and len(workers_of(process.pid)) == 2:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"not ready within {STARTUP_TIMEOUT} s:\n{log.read_text()}"
                time.sleep(0.2)
            workers = workers_of(process.pid)
            for _ in range(20):  # each request on a new connection: the kernel hands them to either worker
                response = http.get("/readyz", headers={"Connection": "close"})
                assert response.status_code == 200
                assert response.json()["status"] == "ready"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    text = log.read_text()
    assert process.returncode == 0, text + errors.read_text()
    # The server logs JSON lines on standard output (a container's log), the access lines among them.
    lines = [json.loads(line) for line in text.splitlines()]
    assert sum(1 for line in lines if line["logger"] == "keyhall.access" and line["route"] == "/readyz") >= 20
    assert '"level"' not in errors.read_text()
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert text.count("Running upgrade  -> ") == 1, text  # the first migration, applied once
    assert text.count("domain checker started") == 1, text
    assert text.count("purge started") == 1, text
    assert text.count("Application startup complete") == 2, text
    assert "domain checker stopped" in text
    assert "purge stopped" in text


def test_workers_refuse_the_separate_metrics_port(home: tuple[Path, str]) -> None:
    """Refused before anything starts, so the command runs in process (click's runner)."""
    path, url = home
    env = environ(path, url, KEYHALL_METRICS_PORT=str(free_port()))
    overlay: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KEYHALL_")}
    overlay.update({k: v for k, v in env.items() if k.startswith("KEYHALL_")})
    with contextlib.chdir(path):
        done = CliRunner().invoke(main, ["serve", "--port", str(free_port()), "--workers", "2"], env=overlay)
    assert done.exit_code == 2, (done.output, done.exception)
    assert "KEYHALL_METRICS_PORT" in done.stderr
