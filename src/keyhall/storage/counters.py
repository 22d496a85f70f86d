"""Rate-limit counters in the database: one atomic upsert per request."""

from __future__ import annotations

import random

from sqlalchemy import Engine, bindparam, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from keyhall.errors import ServiceUnavailable
from keyhall.storage.models import RateCounterRow


class SqlCounterStore:
    """The upsert is built once per store (only its parameters change per request), as the hot
    path's statements are (``keyhall.storage.hot_queries``)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self.upsert = insert(RateCounterRow).values(
            key=bindparam("key"), window_start=bindparam("window_start"), count=1,
            expires_at=bindparam("expires_at"),
        ).on_conflict_do_update(
            index_elements=["key", "window_start"], set_={"count": RateCounterRow.count + 1}
        ).returning(RateCounterRow.count)

    def increment(self, key: str, window_start: int, window_seconds: int) -> int:
        try:
            with self.engine.begin() as connection:
                count = int(connection.execute(self.upsert, {
                    "key": key[:200], "window_start": window_start, "expires_at": window_start + window_seconds,
                }).scalar_one())
                if random.random() < 0.01:  # occasional pruning, not security
                    connection.execute(delete(RateCounterRow).where(RateCounterRow.expires_at < window_start))
        except (DBAPIError, PoolTimeout) as exc:
            raise ServiceUnavailable("the database is unavailable; try again shortly") from exc
        return count
