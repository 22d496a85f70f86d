"""A bulkhead per identity provider: at most ``limit`` calls in flight to one IdP from this
instance; the next is refused at once (``IdPBusy``) instead of waiting for a worker thread.

One organization's IdP that hangs would otherwise take a worker thread for every sign-in that
reaches it, up to its timeouts, until no thread is left for anyone else. With the bulkhead, a
hung IdP holds at most ``limit`` threads; its other sign-ins fail fast with a page that says the
identity provider is not answering, and every other tenant keeps its share of the instance.

Keys are origins (``scheme://host:port``): two IdPs on one host but different ports (or a
vendor's shared host with one port) are told apart only as far as the network itself tells them.
The counts are per process: each instance behind a load balancer caps its own calls.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from keyhall.errors import IdPBusy


@functools.lru_cache(maxsize=512)
def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``; the URL itself when it does not parse (the guard refuses it later).
    Kept per process: a sign-in calls the same few IdP endpoints as every other."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return url[:200]
    port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{parsed.host}:{port}"


class Bulkhead:
    """Counts calls in flight per key; thread-safe."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("a bulkhead needs room for at least one call")
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def in_flight(self, key: str) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)

    @contextmanager
    def slot(self, url: str, *, field: str | None = None) -> Iterator[None]:
        """Hold one of the ``limit`` places of ``url``'s origin for the block; IdPBusy when none is free."""
        key = origin_of(url)
        with self._lock:
            used = self._in_flight.get(key, 0)
            if used >= self.limit:
                raise IdPBusy(f"the identity provider at {key} is not answering: {used} calls to it are already "
                              f"waiting (at most {self.limit} at once); try again shortly",
                              field=field, details={"origin": key, "limit": self.limit})
            self._in_flight[key] = used + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._in_flight[key] - 1
                if left:
                    self._in_flight[key] = left
                else:
                    del self._in_flight[key]
