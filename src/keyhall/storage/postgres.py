"""PostgreSQL connections whose every wait ends.

A database that stops answering (a failover, a full disk, a lock pile-up, a load balancer whose
backend is gone) must turn into 503s within a bound, not into workers waiting as long as the
stall lasts. Each layer covers what the one below cannot:

- the server ends statements and lock waits itself (``statement_timeout``, ``lock_timeout``) and
  answers with an error, the connection staying usable;
- ``connect_timeout`` bounds new connections, ``tcp_user_timeout`` sends the kernel never got
  acknowledged; keepalives find a peer that vanished while idle;
- none of these fires while the server (or a proxy in front of it) accepts the bytes and answers
  nothing: the peer's kernel acknowledges, so ``BoundedConnection`` puts a client-side deadline
  on every network wait of psycopg (queries, commits, rollbacks and the pool's liveness ping).
  Past it the connection is closed, ``OperationalError`` is raised, and the pool discards it.

``timeout`` is ``KEYHALL_DATABASE_TIMEOUT_SECONDS``. The client deadline is one second longer than
the server's, so that a live but slow server's own cancellation (which keeps the connection)
comes first; the pool's ping gets at most ``PING_SECONDS``. ``unbounded(connection)`` lifts both
for work that may legitimately take longer (migrations, waiting for another instance's).

The pool checks a connection's liveness at checkout (:func:`check_liveness`) only when it has sat
unused for ``ALIVE_BYPASS_SECONDS`` or more: under load nearly every checkout finds a connection
returned a moment ago, and a ping per checkout was a round trip per request.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, event, exc, text

RV = TypeVar("RV")

PING_SECONDS = 2.0  # the pool's liveness ping at checkout: a stalled server fails it this fast
#: A connection used this recently goes out of the pool without a liveness ping: the window
#: HikariCP keeps by default (``aliveBypassWindowMs``, 500 ms) for the same reason.
ALIVE_BYPASS_SECONDS = 0.5
_LAST_USED = "keyhall_last_used"  # in a pool record's ``info``: time.monotonic() of its connect or last check-in
_CLIENT_MARGIN = 1.0  # seconds the client waits beyond the server's own timeouts


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose network waits end after ``wait_timeout`` seconds (None: never)."""

    wait_timeout: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        bound = self.wait_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            return super().wait(gen, interval=interval, timeout=bound)
        except psycopg.OperationalError as exc:
            if bound is None or time.monotonic() - started < bound or self.closed:
                raise
            # The server is silent mid-exchange: the connection's state is unknown, never reuse it.
            self.pgconn.finish()
            raise psycopg.OperationalError(f"the database did not answer within {bound:g} s") from exc


def connect_args(timeout: float) -> dict[str, Any]:
    """libpq parameters: server-side statement and lock timeouts, connect and TCP bounds."""
    millis = max(1, int(timeout * 1000))
    return {
        "connect_timeout": max(2, math.ceil(timeout)),  # libpq's smallest effective value is 2
        "tcp_user_timeout": millis,
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
        "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
    }


def bound_waits(engine: Engine, timeout: float) -> None:
    """Make ``engine`` open ``BoundedConnection``s and give its pool ping a short deadline of its own."""
    wait_timeout = timeout + _CLIENT_MARGIN
    ping_timeout = min(PING_SECONDS, wait_timeout)

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.wait_timeout = wait_timeout
        return connection

    event.listen(engine, "do_connect", connect)
    original_ping = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:  # Any: SQLAlchemy's DBAPI protocol does not fit psycopg
        if not isinstance(dbapi_connection, BoundedConnection):
            return bool(original_ping(dbapi_connection))
        previous, dbapi_connection.wait_timeout = dbapi_connection.wait_timeout, ping_timeout
        try:
            return bool(original_ping(dbapi_connection))  # type: ignore[arg-type]
        finally:
            dbapi_connection.wait_timeout = previous

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]
    check_liveness(engine)


def check_liveness(engine: Engine, bypass_seconds: float = ALIVE_BYPASS_SECONDS) -> None:
    """Ping a pooled connection at checkout when it has been idle ``bypass_seconds`` or more (in
    place of ``pool_pre_ping``, which pings at every checkout). A failed ping discards it and every
    connection pooled before it (a server that dropped one has most likely dropped all: a restart,
    a failover), and the pool opens a new one, which needs no ping.

    A connection that dies within the window is found by its request's first statement instead:
    that request answers 503, and SQLAlchemy's disconnect handling discards the pool's connections
    the same way, so the next request starts fresh."""

    def stamp(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, -math.inf) < bypass_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except psycopg.Error as error:
            raise exc.InvalidatePoolError(f"a pooled connection failed its liveness check: {error}") from error
        if not alive:
            raise exc.InvalidatePoolError("a pooled connection failed its liveness check")

    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", checkout)


@contextlib.contextmanager
def unbounded(connection: Connection) -> Iterator[None]:
    """Lift the statement, lock and client timeouts for the current transaction of ``connection``."""
    if connection.dialect.name != "postgresql":
        yield
        return
    dbapi_connection: Any = connection.connection.dbapi_connection
    bounded = isinstance(dbapi_connection, BoundedConnection)
    previous = dbapi_connection.wait_timeout if bounded else None
    connection.execute(text("SET LOCAL statement_timeout = 0"))
    connection.execute(text("SET LOCAL lock_timeout = 0"))
    if bounded:
        dbapi_connection.wait_timeout = None
    try:
        yield
    finally:
        if bounded:
            dbapi_connection.wait_timeout = previous
