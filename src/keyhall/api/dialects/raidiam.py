"""Dialect `raidiam`: work in progress."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from keyhall.api.deps import RateLimited

router = APIRouter(tags=["raidiam"])


def install(app: FastAPI) -> None:
    app.include_router(router, dependencies=[RateLimited])
