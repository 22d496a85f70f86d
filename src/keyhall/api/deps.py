"""Request-scoped dependencies: the runtime, a unit of work, the calling principal, the context.

FastAPI runs every plain ``def`` dependency in its thread pool, one hand-off each. So every dependency
here is an ``async def`` that hands off only what may block: the API-key check (its database read and
counter write go together in one hand-off), and, at the end, ending a unit of work that may wait (a
transaction still open, but for a read on SQLite). On SQLite an API key is read on the event loop
(in a deferred read, see :func:`key_reads`), and a handler that uses :func:`run_reads` reads there
too: such reads never wait, and a thread hand-off costs more than they do.

FastAPI solves a dependency's own dependencies every time it is named, even when its value is
cached for the request (each solve walks the dependency's path, query, header and cookie parameters),
so every dependency here takes only the request: the runtime comes from :func:`runtime_of`, the unit of
work from :func:`uow_of` and the principal from the request's own cache (:func:`get_principal`). An API
call's tree is then one level deep: the router's ``RateLimited`` and each of the handler's parameters.

API-key ``GET``/``HEAD`` requests are read-only: their unit of work (the key's lookup included) is one
deferred transaction that takes no write lock (see :meth:`keyhall.storage.database.Database.unit_of_work`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from types import TracebackType
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from keyhall.api.http import request_id
from keyhall.core.access import Principal
from keyhall.core.connection_service import Context
from keyhall.core.org_service import authenticate
from keyhall.core.ports import UnitOfWork
from keyhall.errors import Unauthenticated
from keyhall.runtime import Runtime
from keyhall.security import forwarded
from keyhall.security.rate_limit import Limit

T = TypeVar("T")


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

SAFE_METHODS = frozenset({"GET", "HEAD"})


def reads_only(request: Request) -> bool:
    """Whether the request only reads: a ``GET`` or ``HEAD`` of an API-key route (the hosted pages'
    and ``/oauth2/*`` GETs write sign-in state, so they are not)."""
    if request.method not in SAFE_METHODS:
        return False
    route = request.scope.get("route")
    if route is None:
        return False
    charged = getattr(route, _CHARGED, None)  # worked out once per route, kept on the route itself
    if charged is None:
        dependant = getattr(route, "dependant", None)
        charged = dependant is not None and calls_api_key(dependant)
        setattr(route, _CHARGED, charged)
    return bool(charged)


_CHARGED = "keyhall_authenticates_api_key"


def calls_api_key(dependant: object) -> bool:
    """Whether a route's dependency tree authenticates an API key (:func:`get_principal`, or
    :func:`get_context`, which asks it)."""
    if getattr(dependant, "call", None) in _API_KEY_DEPENDENCIES:
        return True
    return any(calls_api_key(sub) for sub in getattr(dependant, "dependencies", ()))


async def get_uow(request: Request) -> UnitOfWork:
    """The request's unit of work (:func:`uow_of`)."""
    return uow_of(request)


def uow_of(request: Request) -> UnitOfWork:
    """The request's unit of work, made at the first ask and kept in the request's scope. Making one
    does no I/O (the session connects on first use), and ending it needs a thread only while it still
    holds a transaction (to roll back).

    It ends where a ``yield`` dependency of the request would (after the response is sent, seeing the
    handler's exception, whose database errors ``__exit__`` turns into Keyhall's): its exit is pushed
    on the request's exit stack directly, which spares the per-request generator, context manager and
    cancel scope FastAPI wraps around a ``yield`` dependency."""
    stack = request.scope.get(_REQUEST_EXIT_STACK)
    if not isinstance(stack, AsyncExitStack):
        raise RuntimeError(f"get_uow runs only as a dependency of a FastAPI route ({_REQUEST_EXIT_STACK} missing)")
    made = request.scope.get(_UOW)
    if made is not None:
        made_uow: UnitOfWork = made
        return made_uow
    database = runtime_of(request).database
    uow = database.unit_of_work(read_only=reads_only(request))

    async def end(exc_type: type[BaseException] | None, exc: BaseException | None,
                  traceback: TracebackType | None) -> bool:
        if database.ends_at_once(uow):
            uow.__exit__(exc_type, exc, traceback)
        else:
            with anyio.CancelScope(shield=True):  # a cancelled request still rolls back and returns its connection
                await run_in_threadpool(uow.__exit__, exc_type, exc, traceback)
        return False  # the handler's exception, if any, goes on

    stack.push_async_exit(end)
    request.scope[_UOW] = uow
    return uow


#: Where FastAPI keeps the exit stack its request-scoped ``yield`` dependencies end on.
_REQUEST_EXIT_STACK = "fastapi_inner_astack"
#: Where the request's unit of work and authenticated principal are kept, in its ASGI scope.
_UOW = "keyhall.uow"
_PRINCIPAL = "keyhall.principal"


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def client_address(request: Request) -> str:
    """The client's address for per-address limits: the TCP peer, or, when the peer is one of
    ``KEYHALL_TRUSTED_PROXIES``, the right-most untrusted address of ``X-Forwarded-For``
    (see :mod:`keyhall.security.forwarded`). A forged header from any other peer changes nothing."""
    trusted = runtime_of(request).settings.trusted_proxies
    peer = request.client.host if request.client else None
    headers = request.headers.getlist("x-forwarded-for") if trusted else []
    return forwarded.client_address(peer, headers, trusted)


def authenticate_and_charge(request: Request, runtime: Runtime, uow: UnitOfWork,
                            attempt: Callable[[UnitOfWork], Principal]) -> Principal:
    """Authenticate with ``attempt`` (given the unit of work to read the key in), then count the call:
    against the key that authenticated, or, when authentication fails (no key, unknown key, wrong
    secret, malformed token), against the client's address. A key's budget is thus spent only by
    calls that prove its secret: sending wrong secrets with another key's id cannot exhaust that
    key's budget. See :func:`key_reads` for where the key is read; either way no database lock is
    held while the counter is written."""
    limit = Limit(runtime.settings.api_rate_limit_per_minute)
    try:
        with key_reads(request, runtime, uow) as reads:
            principal = attempt(reads)
    except Unauthenticated:
        runtime.limiter.hit(f"api:ip:{client_address(request)}", limit, runtime.clock())
        raise
    runtime.limiter.hit(f"api:key:{principal.key_id}", limit, runtime.clock())
    return principal


@contextmanager
def key_reads(request: Request, runtime: Runtime, uow: UnitOfWork) -> Iterator[UnitOfWork]:
    """Where the caller's key is read. A request that only reads (:func:`reads_only`) reads it in its
    own unit of work, whose deferred transaction holds no lock: the key's lookup and the handler's
    reads share it (and it ends at once if the key is refused). Any other request reads it in a
    read-only unit of its own, ended before the handler's write transaction begins: the lookup
    neither takes nor waits for a write lock (on SQLite it never waits, on PostgreSQL it is one
    statement without ``BEGIN``), and a refused key leaves the request's unit untouched."""
    if reads_only(request):
        try:
            yield uow
        except Unauthenticated:
            uow.rollback()
            raise
        return
    with runtime.database.unit_of_work(read_only=True) as reads:
        yield reads


async def get_principal(request: Request) -> Principal:
    """The authenticated caller, charged to its budget: once per request, whoever asks first (the
    router's ``RateLimited``, :func:`get_context`), the others get the same principal.

    Where the key's read never waits (:meth:`~keyhall.storage.database.Database.reads_never_wait`:
    every API key is read in a read-only unit, see :func:`key_reads`), the lookup runs here on the
    event loop and only the count (a write) goes to a thread, when counting is on; otherwise all of
    it runs in one hand-off."""
    known = request.scope.get(_PRINCIPAL)
    if known is not None:
        principal: Principal = known
        return principal
    principal = await _authenticate(request)
    request.scope[_PRINCIPAL] = principal
    return principal


async def _authenticate(request: Request) -> Principal:
    runtime = runtime_of(request)
    uow = uow_of(request)

    def attempt(reads: UnitOfWork) -> Principal:
        return authenticate(reads, bearer_token(request), runtime.clock())

    if not runtime.database.reads_never_wait:
        return await run_in_threadpool(authenticate_and_charge, request, runtime, uow, attempt)
    limit = Limit(runtime.settings.api_rate_limit_per_minute)
    try:
        with key_reads(request, runtime, uow) as reads:
            principal = attempt(reads)
    except Unauthenticated:
        await _charge(runtime, f"api:ip:{client_address(request)}", limit)
        raise
    await _charge(runtime, f"api:key:{principal.key_id}", limit)
    return principal


async def _charge(runtime: Runtime, key: str, limit: Limit) -> None:
    if limit.requests > 0:  # the counter is a write (database or Redis): in a thread
        await run_in_threadpool(runtime.limiter.hit, key, limit, runtime.clock())


async def run_reads(runtime: Runtime, uow: UnitOfWork, call: Callable[[], T]) -> T:
    """``call()`` (a handler's reads in ``uow``, its last use of it): on the event loop when the unit
    of work's reads never wait, else in the thread pool, whose one hand-off also ends a read-only
    unit's transaction, so that the end of the request needs no hand-off of its own."""
    database = runtime.database
    if database.never_waits(uow):
        return call()

    def call_then_end() -> T:
        try:
            return call()
        finally:
            database.end_reads(uow)

    return await run_in_threadpool(call_then_end)


async def in_read_only_unit(runtime: Runtime, work: Callable[[UnitOfWork], T]) -> T:
    """``work`` in a read-only unit of work of its own (no write lock taken or waited for): on the
    event loop where such reads never wait (SQLite), else in the thread pool (one hand-off)."""
    def run() -> T:
        with runtime.database.unit_of_work(read_only=True) as uow:
            return work(uow)

    if runtime.database.reads_never_wait:
        return run()
    return await run_in_threadpool(run)


#: A router-wide dependency: authenticate (and so count) every call before anything else runs. It is
#: :func:`get_principal` itself, so the handler's own principal (and context) is the cached value.
#: The counting itself is :func:`authenticate_and_charge`.
RateLimited = Depends(get_principal)


async def enforce_login_rate_limit(request: Request) -> None:
    """Count a sign-in endpoint request against its client address, per endpoint (the count, a
    write, in a thread; with counting off, no hand-off at all)."""
    runtime = runtime_of(request)
    limit = Limit(runtime.settings.login_rate_limit_per_minute)
    if limit.requests <= 0:
        return
    route = request.scope.get("route")
    endpoint = getattr(route, "path", request.url.path)
    await run_in_threadpool(runtime.limiter.hit, f"login:{endpoint}:{client_address(request)}", limit,
                            runtime.clock())


LoginRateLimited = Depends(enforce_login_rate_limit)


async def get_context(request: Request) -> Context:
    return Context(principal=await get_principal(request), request_id=request_id(request),
                   now=runtime_of(request).clock())


ContextDep = Annotated[Context, Depends(get_context)]

_API_KEY_DEPENDENCIES = (get_principal, get_context)
