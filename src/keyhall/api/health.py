"""Liveness and readiness.

Both handlers are coroutines: they never wait for a worker thread, so they answer while every
thread is busy (a stalled database, a hung identity provider). ``/readyz`` waits for the
database's ping at most ``READINESS_SECONDS`` (or the database timeout, if shorter) and answers
503 past it: it is what a load balancer uses to take the instance out, and it must say so fast.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from keyhall.runtime import Runtime

router = APIRouter(tags=["health"])

READINESS_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    database = runtime.database
    deadline = min(READINESS_SECONDS, database.timeout)
    try:
        # shield: a ping given up on keeps running in its own thread, and later callers share it.
        ready = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(database.start_ping())), deadline)
    except TimeoutError:
        ready = False
    if not ready:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ready", "database": database.backend})
