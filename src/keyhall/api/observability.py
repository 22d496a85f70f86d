"""Prometheus metrics: HTTP requests, sign-ins and calls to identity providers.

Each app gets its own ``Metrics`` (a dedicated ``CollectorRegistry``), so several apps in one
process (the tests build many) never share or collide on series. ``install_metrics(app, ...)``
adds the request middleware and, when a token is configured, ``GET /metrics`` behind
``Authorization: Bearer <token>``; ``start_metrics_server`` serves the same registry on a port of
its own instead (127.0.0.1 by default), for scrapers that cannot send a token.

Code far from the HTTP layer (the login flow, the IdP clients) reports through the leaf module
``keyhall.metrics`` (``observe_login``, ``observe_idp_call``, ``idp_call``). They find the current
app's ``Metrics`` through a context variable the middleware here sets for each request (Starlette
copies it into the threadpool that runs sync endpoints); outside any request (the background domain
checker) they report to the most recently installed app's metrics, and with none installed they do
nothing.
Metrics never fail a request: an unexpected label value is folded into a bounded one.

Label cardinality is bounded by construction:

- ``route`` is the route template (``/v1/organizations/{org}/connections``), never the raw path;
  a request no route handled (none matches, or it was refused before routing: 413, 415) is
  ``unmatched``; ``method`` is one of the HTTP methods or ``other``;
  ``status`` is the class (``2xx`` ... ``5xx``).
- ``reason`` is one of ``LOGIN_REASONS`` (the typed reasons of the login flow and the protocol
  engines) or ``other``; ``idp_error:<code>`` counts as ``idp_error``.
- ``connection_id`` is a configured connection's id (or ``none``), at most
  ``MAX_CONNECTION_LABELS`` distinct values, then ``other``.
- ``kind`` is one of ``IDP_CALL_KINDS`` or ``other``.
"""

from __future__ import annotations

import hmac
import threading
import time
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyhall.api.access_log import log_request
from keyhall.api.http import error_response
from keyhall.errors import Unauthenticated
from keyhall.metrics import OTHER, Metrics, enter_request, leave_request, set_process_default

UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


class MetricsMiddleware:
    """Count and time every HTTP request by method, route template and status class, and write its
    access-log line (:mod:`keyhall.api.access_log`)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before a response starts

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = enter_request(self.metrics)
        try:
            await self.app(scope, receive, send_observed)
        finally:
            leave_request(token)
            method = scope["method"] if scope["method"] in _METHODS else OTHER
            route = route_template(scope)
            seconds = time.perf_counter() - started
            labels = (method, route, status_class(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.request_seconds.labels(*labels).observe(seconds)
            log_request(scope, method=method, route=route, status=status, seconds=seconds)


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request (Starlette's routing puts the route in
    the scope), never the raw path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return UNMATCHED_ROUTE
    # a route of a mounted application (SCIM's, at /scim/v2) is relative to the mount point
    mounted = str(scope.get("root_path", "")).removeprefix(str(scope.get("app_root_path", "")))
    return mounted + template


def install_metrics(app: FastAPI, *, token: str | None) -> Metrics:
    """Give ``app`` its own metrics and the request middleware; serve ``GET /metrics`` when
    ``token`` is set (``KEYHALL_METRICS_TOKEN``). Becomes the process default for reports made
    outside any request."""
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if token:
        expected = token.encode()

        def metrics_endpoint(request: Request) -> Response:
            scheme, _, credential = request.headers.get("authorization", "").partition(" ")
            given = credential.strip().encode("latin-1")  # the header's bytes as sent
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
                return error_response(request, Unauthenticated("GET /metrics needs the metrics bearer token"))
            return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST,
                            headers={"Cache-Control": "no-store"})

        app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    set_process_default(metrics)
    return metrics


def metrics_of(app: FastAPI) -> Metrics:
    metrics = getattr(app.state, "metrics", None)
    if not isinstance(metrics, Metrics):
        raise RuntimeError("install_metrics(app, ...) was not called for this app")
    return metrics


def start_metrics_server(metrics: Metrics, port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Serve ``metrics`` at ``http://host:port/metrics`` from a daemon thread (no token: keep the
    port private). ``server.shutdown()`` stops it."""
    return start_http_server(port, addr=host, registry=metrics.registry)
