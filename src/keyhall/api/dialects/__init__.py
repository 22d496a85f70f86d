"""The five vendor-shaped configuration APIs, each a thin translation over the core."""

from __future__ import annotations

from fastapi import FastAPI

from keyhall.api.dialects import configurations, keycard, logto, luzmo, raidiam


def install_all(app: FastAPI) -> None:
    for dialect in (luzmo, logto, keycard, configurations, raidiam):
        dialect.install(app)
