"""Measuring a server from outside: its process CPU clock and memory (Linux ``/proc``), and a
bounded burst of requests from a few client threads.

CPU is the sum of user and system time of the server process and all its descendants (uvicorn
workers), read from ``/proc/<pid>/stat`` before and after a phase: it is what the server spent,
whatever else the machine was doing (a busy machine changes it little, unlike wall time).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")  # clock ticks per second of /proc/<pid>/stat times


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on; the name may hold spaces


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def reference_loop_seconds(rounds: int = 300_000) -> float:
    """This process's CPU seconds for a fixed loop (``rounds`` SHA-256 of 64 bytes): how fast the
    machine is at this moment. Shared machines move by half or more within an hour, and every CPU
    figure moves with them; printed beside them, it tells a faster code from a faster moment."""
    import hashlib

    block = b"x" * 64
    started = time.process_time()
    for _ in range(rounds):
        hashlib.sha256(block).digest()
    return time.process_time() - started


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants."""
    total = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def worker_rss(root: int) -> int:
    """The RSS of the largest process of the server's tree (the worker, with or without a supervisor)."""
    return max((rss_bytes(pid) for pid in process_tree(root)), default=0)


@dataclass
class Burst:
    latencies: list[float] = field(default_factory=list)  # seconds per successful operation
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the burst
    cpu: float = 0.0  # server CPU seconds during the burst

    @property
    def done(self) -> int:
        return len(self.latencies)

    def cpu_ms_per_op(self) -> float | None:
        return self.cpu * 1000 / self.done if self.done else None

    def per_second(self) -> float | None:
        return self.done / self.seconds if self.seconds > 0 and self.done else None


def burst(server_pid: int, count: int, concurrency: int, one: Callable[[Any, int], None],
          new_client: Callable[[], Any] = lambda: None, close: Callable[[Any], None] = lambda _c: None,
          deadline: float | None = None, max_errors: int = 10) -> Burst:
    """``count`` calls of ``one(client, index)`` from ``concurrency`` threads (each its own client),
    none started after ``deadline`` (monotonic) or once ``max_errors`` failed; the server's CPU
    clock is read just before the threads start and just after they end."""
    result, lock, issued = Burst(), threading.Lock(), 0

    def take() -> int | None:
        nonlocal issued
        with lock:
            if issued >= count or len(result.errors) > max_errors:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            issued += 1
            return issued - 1

    def worker() -> None:
        client = new_client()
        try:
            while (index := take()) is not None:
                mark = time.perf_counter()
                try:
                    one(client, index)
                except Exception as exc:  # any failure is counted and reported, the burst goes on
                    with lock:
                        result.errors.append(f"{type(exc).__name__}: {exc}"[:500])
                    continue
                elapsed = time.perf_counter() - mark
                with lock:
                    result.latencies.append(elapsed)
        finally:
            close(client)

    threads = [threading.Thread(target=worker, name=f"client-{i}", daemon=True) for i in range(concurrency)]
    cpu_before, started = cpu_seconds(server_pid), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    result.cpu = cpu_seconds(server_pid) - cpu_before
    return result
