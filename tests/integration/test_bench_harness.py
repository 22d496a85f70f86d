"""The benchmark harness measures what it says: the server's CPU clock (its process and descendants)
and bounded bursts of requests. Tiny counts; no timing targets are asserted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench import inproc, proc, suite

BURN = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.4: pass\\ntime.sleep(30)"])
time.sleep(30)
"""


def test_the_cpu_clock_counts_the_descendants_of_the_server() -> None:
    root = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        deadline = time.monotonic() + 20
        while len(proc.process_tree(root.pid)) < 2 or proc.cpu_seconds(root.pid) < 0.3:
            assert time.monotonic() < deadline, "the child's CPU was never seen"
            time.sleep(0.1)
        assert proc.worker_rss(root.pid) > 0
    finally:
        for pid in reversed(proc.process_tree(root.pid)[1:]):
            subprocess.run(["kill", str(pid)], check=False)
        root.kill()
        root.wait(timeout=10)


def test_a_burst_against_the_bare_route(tmp_path: Path) -> None:
    bare, url = suite.start_bare(tmp_path)
    try:
        result = suite.get_phase(bare.process.pid, f"{url}/bare", {}, 40, 2)
    finally:
        bare.stop()
    assert result.errors == []
    assert result.done == 40
    assert result.cpu >= 0
    assert result.seconds > 0


def test_a_burst_counts_failures_and_stops_after_too_many() -> None:
    def fail(_client: None, index: int) -> None:
        raise ValueError(f"no {index}")

    result = proc.burst(os.getpid(), 100, 2, fail, max_errors=3)
    assert result.done == 0
    assert 4 <= len(result.errors) < 100


@pytest.mark.parametrize("argv", [["--rows", "oidc,nope"], ["--gets", "0"], ["--codes", "5000"],
                                  ["--phase-seconds", "0"]])
def test_the_suite_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        suite.parse_args(argv)


def test_the_in_process_bench_runs_every_row() -> None:
    """Every row's set-up and requests succeed (a request that is not answered 200 stops the bench
    with its status), and each row prints its figure. Run as the README runs it: a process of its
    own (its event loop must be the only one in its thread)."""
    done = subprocess.run([sys.executable, "-m", "bench.inproc", "--requests", "3", "--rounds", "1"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == list(inproc.ROWS), done.stdout


@pytest.mark.parametrize("argv", [["--rows", "get,nope"], ["--requests", "0"], ["--profile", "bare"]])
def test_the_in_process_bench_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        inproc.parse_args(argv)
