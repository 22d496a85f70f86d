"""Request-scoped dependencies: the runtime, a unit of work, the calling principal, the context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from keyhall.api.http import request_id
from keyhall.core.access import Principal
from keyhall.core.connection_service import Context
from keyhall.core.org_service import authenticate
from keyhall.core.ports import UnitOfWork
from keyhall.runtime import Runtime
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


def enforce_rate_limit(request: Request, runtime: RuntimeDep) -> None:
    """Count the request against its API key (or, without one, its client address)."""
    token = bearer_token(request)
    key_id = token[3:].split(".", 1)[0] if token and token.startswith("kh_") else None
    who = f"key:{key_id}" if key_id else f"ip:{request.client.host if request.client else 'unknown'}"
    runtime.limiter.hit(f"api:{who}", Limit(runtime.settings.api_rate_limit_per_minute), runtime.clock())


RateLimited = Depends(enforce_rate_limit)


def enforce_login_rate_limit(request: Request, runtime: RuntimeDep) -> None:
    """Count a sign-in endpoint request against its client address, per endpoint."""
    route = request.scope.get("route")
    endpoint = getattr(route, "path", request.url.path)
    who = request.client.host if request.client else "unknown"
    runtime.limiter.hit(f"login:{endpoint}:{who}", Limit(runtime.settings.login_rate_limit_per_minute),
                        runtime.clock())


LoginRateLimited = Depends(enforce_login_rate_limit)


def get_principal(request: Request, uow: UowDep, runtime: RuntimeDep) -> Principal:
    return authenticate(uow, bearer_token(request), runtime.clock())


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_context(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> Context:
    return Context(principal=principal, request_id=request_id(request), now=runtime.clock())


ContextDep = Annotated[Context, Depends(get_context)]
