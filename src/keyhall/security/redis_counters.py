"""Rate-limit counters in Redis (``KEYHALL_REDIS_URL``): one INCR and one EXPIRE per request, in a
pipeline, shared by every instance. Without Redis the database keeps the counters."""

from __future__ import annotations

import redis

from keyhall.errors import ServiceUnavailable


class RedisCounterStore:
    def __init__(self, url: str, *, prefix: str = "keyhall:rate:"):
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.prefix = prefix

    def increment(self, key: str, window_start: int, window_seconds: int) -> int:
        name = f"{self.prefix}{key}:{window_start}"
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(name)
            pipe.expire(name, window_seconds + 5)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            raise ServiceUnavailable("the rate-limit store (Redis) is unavailable; try again shortly") from exc
        return int(count)

    def close(self) -> None:
        self.client.close()
