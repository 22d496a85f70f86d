"""Request-scoped dependencies: the runtime, a unit of work, the calling principal, the context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request

from keyhall.api.http import request_id
from keyhall.core.access import Principal
from keyhall.core.connection_service import Context
from keyhall.core.org_service import authenticate
from keyhall.core.ports import UnitOfWork
from keyhall.errors import Unauthenticated
from keyhall.runtime import Runtime
from keyhall.security import forwarded
from keyhall.security.rate_limit import Limit


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_uow(runtime: RuntimeDep) -> Iterator[UnitOfWork]:
    with runtime.database.unit_of_work() as uow:
        yield uow


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
    trusted = get_runtime(request).settings.trusted_proxies
    peer = request.client.host if request.client else None
    headers = request.headers.getlist("x-forwarded-for") if trusted else []
    return forwarded.client_address(peer, headers, trusted)


def authenticate_and_charge(request: Request, runtime: Runtime, uow: UnitOfWork,
                            attempt: Callable[[], Principal]) -> Principal:
    """Authenticate with ``attempt``, then count the call: against the key that authenticated, or,
    when authentication fails (no key, unknown key, wrong secret, malformed token), against the
    client's address. A key's budget is thus spent only by calls that prove its secret: sending
    wrong secrets with another key's id cannot exhaust that key's budget. The unit of work's
    transaction ends before counting, so no database lock is held while the counter is written."""
    limit = Limit(runtime.settings.api_rate_limit_per_minute)
    try:
        principal = attempt()
    except Unauthenticated:
        uow.rollback()
        runtime.limiter.hit(f"api:ip:{client_address(request)}", limit, runtime.clock())
        raise
    uow.rollback()
    runtime.limiter.hit(f"api:key:{principal.key_id}", limit, runtime.clock())
    return principal


def get_principal(request: Request, uow: UowDep, runtime: RuntimeDep) -> Principal:
    """The authenticated caller (once per request: FastAPI caches it), charged to its budget."""
    return authenticate_and_charge(request, runtime, uow,
                                   lambda: authenticate(uow, bearer_token(request), runtime.clock()))


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def enforce_rate_limit(principal: PrincipalDep) -> None:
    """A router-wide dependency: authenticate (and so count) every call before anything else runs.
    The counting itself is :func:`authenticate_and_charge`."""


RateLimited = Depends(enforce_rate_limit)


def enforce_login_rate_limit(request: Request, runtime: RuntimeDep) -> None:
    """Count a sign-in endpoint request against its client address, per endpoint."""
    route = request.scope.get("route")
    endpoint = getattr(route, "path", request.url.path)
    runtime.limiter.hit(f"login:{endpoint}:{client_address(request)}",
                        Limit(runtime.settings.login_rate_limit_per_minute), runtime.clock())


LoginRateLimited = Depends(enforce_login_rate_limit)


def get_context(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> Context:
    return Context(principal=principal, request_id=request_id(request), now=runtime.clock())


ContextDep = Annotated[Context, Depends(get_context)]
