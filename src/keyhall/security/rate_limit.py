"""Fixed-window rate limiting over a shared counter store (database or Redis).

Counters live outside the process so that several Keyhall instances share one budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from keyhall.errors import RateLimited


class CounterStore(Protocol):
    def increment(self, key: str, window_start: int, window_seconds: int) -> int:
        """Add one to the counter of ``key`` in the window; return the new count."""
        ...


@dataclass(frozen=True)
class Limit:
    requests: int
    window_seconds: int = 60


class RateLimiter:
    def __init__(self, store: CounterStore):
        self.store = store

    def hit(self, key: str, limit: Limit, now: datetime) -> None:
        """Count one request; raise RateLimited (with seconds until the window ends) past the limit."""
        if limit.requests <= 0:
            return
        stamp = now.timestamp()
        window_start = int(stamp // limit.window_seconds) * limit.window_seconds
        count = self.store.increment(key, window_start, limit.window_seconds)
        if count > limit.requests:
            retry_after = max(1, math.ceil(window_start + limit.window_seconds - stamp))
            raise RateLimited(
                f"too many requests: at most {limit.requests} per {limit.window_seconds} s; retry in {retry_after} s",
                retry_after=retry_after,
            )
