"""What every SCIM endpoint shares: the directory's authentication, the body, and responses in the
SCIM media type (``keyhall.api.scim.media``, with the error schema).

The endpoints are plain Starlette routes (``Request`` in, ``Response`` out): a SCIM request's few
parameters are read here by name, which costs less than resolving FastAPI's dependencies and
validating its parameters on each of a sync's thousands of requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from keyhall.api.deps import bearer_token, client_address
from keyhall.api.http import request_id
from keyhall.api.native.directories import scim_base_url
from keyhall.api.scim.media import LIST_URN, MEDIA_TYPE
from keyhall.core.connection_service import parse_if_match
from keyhall.core.directory_sync import Sync, authenticate
from keyhall.core.ports import UnitOfWork
from keyhall.errors import InvalidInput, Unauthenticated
from keyhall.runtime import Runtime
from keyhall.security.rate_limit import Limit

T = TypeVar("T")


def respond(body: dict[str, Any], status: int = 200, *, etag: str | None = None,
            location: str | None = None) -> JSONResponse:
    headers = {}
    if etag:
        headers["ETag"] = etag
    if location:
        headers["Location"] = location
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


async def read_body(request: Request) -> Any:
    """The JSON body; malformed JSON is a SCIM 400 ``invalidSyntax`` (size is capped upstream)."""
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON", field="body",
                           details={"scim_type": "invalidSyntax"}) from None


def if_match(request: Request) -> int | None:
    """The version ``If-Match`` names, or None (absent or ``*``)."""
    return parse_if_match(request.headers.get("if-match"))


def _count_failure(request: Request, runtime: Runtime) -> None:
    """A failed attempt counts against the client's address (the API's per-minute budget), so
    tokens cannot be guessed at speed; a directory's own calls are not throttled, as an initial
    sync sends thousands."""
    runtime.limiter.hit(f"scim:ip:{client_address(request)}", Limit(runtime.settings.api_rate_limit_per_minute),
                        runtime.clock())


def _authenticated(request: Request, uow: UnitOfWork, runtime: Runtime, directory_id: str) -> Sync:
    """The authenticated directory's request (the transaction ends at once when it is not)."""
    try:
        directory = authenticate(uow, directory_id, bearer_token(request))
    except Unauthenticated:
        uow.rollback()
        raise
    return Sync(uow=uow, directory=directory, request_id=request_id(request), now=runtime.clock(),
                base_url=scim_base_url(runtime.settings.public_url, directory))


def _in_directory(request: Request, runtime: Runtime, scope: AbstractContextManager[UnitOfWork], directory_id: str,
                  call: Callable[[Sync], T]) -> T:
    with scope as uow:
        return call(_authenticated(request, uow, runtime, directory_id))


def _counted(request: Request, runtime: Runtime, uow: AbstractContextManager[UnitOfWork], directory_id: str,
             call: Callable[[Sync], T]) -> T:
    try:
        return _in_directory(request, runtime, uow, directory_id, call)
    except Unauthenticated:
        _count_failure(request, runtime)
        raise


async def in_directory(request: Request, directory_id: str, call: Callable[[Sync], T], *,
                       read_only: bool = False, bounded: bool = True) -> T:
    """Run ``call`` (the request's one core call, and the rendering of its result) as the directory
    whose token the request carries, in one unit of work: a ``read_only`` one for reads, which on
    SQLite neither waits for nor holds the write lock an initial sync's POSTs take turns on.

    The whole database part runs in one hand-off to the thread pool: an IdP's sync is thousands of
    small requests, and a trip to the pool per step would cost more than the work itself. Reads
    that never wait (``Database.never_waits``: a deferred read on SQLite) and whose answer is
    ``bounded`` (a page of at most 200 users, a discovery document; not groups, whose members may
    number thousands) run on the event loop, as the native API's do, and only a failed attempt's
    count (a write) goes to a thread."""
    runtime: Runtime = request.app.state.runtime
    uow = runtime.database.unit_of_work(read_only=read_only)
    if not (bounded and runtime.database.never_waits(uow)):
        return await run_in_threadpool(_counted, request, runtime, uow, directory_id, call)
    try:
        return _in_directory(request, runtime, uow, directory_id, call)
    except Unauthenticated:
        await run_in_threadpool(_count_failure, request, runtime)
        raise


def query(request: Request, name: str) -> str | None:
    """A query parameter (the last one, when it is repeated)."""
    return request.query_params.get(name)


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {"schemas": [LIST_URN], "totalResults": total, "startIndex": start_index,
            "itemsPerPage": len(resources), "Resources": resources}
