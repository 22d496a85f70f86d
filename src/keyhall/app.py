"""``create_app(settings)``: the one place that wires settings, storage, core and surfaces."""

from __future__ import annotations

from fastapi import FastAPI

from keyhall import __version__
from keyhall.api import health
from keyhall.api.http import BodyLimitMiddleware, CorrelationMiddleware, install_error_handlers
from keyhall.api.native import audit, connections, domains, organizations
from keyhall.runtime import Runtime
from keyhall.settings import Settings, load_settings


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or load_settings()
    runtime = runtime or Runtime.build(settings)
    app = FastAPI(
        title="Keyhall",
        version=__version__,
        description="Self-hosted enterprise single sign-on: SSO connections per organization.",
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for router in (health.router, organizations.router, connections.router, domains.router, audit.router):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, json_prefixes=("/v1/",))
    app.add_middleware(CorrelationMiddleware)
    return app
