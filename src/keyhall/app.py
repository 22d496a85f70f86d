"""``create_app(settings)``: the one place that wires settings, storage, core and surfaces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from keyhall import __version__
from keyhall.api import health, scim
from keyhall.api.deps import LoginRateLimited, RateLimited
from keyhall.api.dialects import DIALECTS
from keyhall.api.docs import DOCS_PATH, install_docs
from keyhall.api.http import (
    BodyLimitMiddleware,
    CorrelationMiddleware,
    ErrorStyle,
    UnexpectedErrorMiddleware,
    install_error_handlers,
    register_error_style,
)
from keyhall.api.native import (
    applications,
    audit,
    connections,
    directories,
    domains,
    events,
    organizations,
    portal_links,
    sign_in_traces,
    users,
    webhooks,
)
from keyhall.api.observability import install_metrics
from keyhall.api.openapi import install_openapi
from keyhall.api.routing import install_prefix_dispatch
from keyhall.api.security_headers import install_security_headers
from keyhall.runtime import Runtime
from keyhall.security import outbound_async
from keyhall.settings import Settings, load_settings
from keyhall.web import logout, oauth, pages, portal, portal_setup, portal_sso, saml, sign_in_test

JSON_PREFIXES = ("/v1/", "/0.1.0/", "/api/", "/organizations/", "/organisations/", "/scim/")


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or load_settings()
    runtime = runtime or Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await outbound_async.close_pools(runtime.relying_party.policy)  # this loop's keep-alive IdP connections

    app = FastAPI(
        title="Keyhall",
        version=__version__,
        description="Self-hosted enterprise single sign-on: SSO connections per organization.",
        docs_url=None, redoc_url=None,  # FastAPI's pages load from a CDN: api/docs.py serves /docs
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(health.router)
    register_error_style(ErrorStyle(scim.PREFIX + "/", scim.scim_error_body))
    # the directory's token authenticates; failed attempts are rate-limited. Mounted, not included:
    # one prefix test for every other request, and SCIM's routes tried first for its own
    app.mount(scim.PREFIX, scim.ROUTER)
    for router in (oauth.router, logout.router, pages.router, saml.router, sign_in_test.router, portal.router,
                   portal_sso.router, portal_setup.router):
        app.include_router(router, dependencies=[LoginRateLimited])
    for router in (organizations.router, connections.router, domains.router, audit.router, users.router,
                   applications.router, directories.router, events.router, webhooks.router, sign_in_traces.router,
                   portal_links.router):
        app.include_router(router, dependencies=[RateLimited])
    for dialect in DIALECTS:
        if dialect.error_style is not None:
            register_error_style(dialect.error_style)
        app.include_router(dialect.router, dependencies=[RateLimited] if dialect.charged else [])
        for public in dialect.public:
            app.include_router(public)
    if settings.dev:
        from keyhall import dev  # development mode only: outside it /_dev/ does not exist

        dev.install(app, runtime)
    oauth.register_error_styles()
    install_openapi(app)
    install_docs(app)
    install_prefix_dispatch(app)  # a request is matched against its own surface's routes only
    app.add_middleware(UnexpectedErrorMiddleware)  # innermost
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, json_prefixes=JSON_PREFIXES)
    app.add_middleware(scim.ScimMediaType)  # outside the body limit: its 413s and 415s are SCIM's too
    app.add_middleware(CorrelationMiddleware, header_by_prefix={"/organisations/": "x-fapi-interaction-id"})
    install_metrics(app, token=settings.metrics_token)  # outside the body limit: 413s and 415s are counted
    install_security_headers(app, public_url=settings.public_url, no_store_prefixes=JSON_PREFIXES,
                             docs_paths=(DOCS_PATH,))  # outermost
    return app
