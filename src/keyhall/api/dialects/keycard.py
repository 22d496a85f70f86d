"""Dialect `keycard`: work in progress."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from keyhall.api.deps import RateLimited

router = APIRouter(tags=["keycard"])


def install(app: FastAPI) -> None:
    app.include_router(router, dependencies=[RateLimited])
