"""Dispatch by the path's first segment: a request is matched only against the routes that can match it.

The app includes every surface's routers flat (the native API, five dialects, the pages, the provider),
and a router tries its routes in order, one regular expression each, so a ``GET /v1/...`` used to be
tried against every sign-in page first. :func:`install_prefix_dispatch` puts, in front of the app's
router, a table from a path's first segment (``v1``, ``api``, ``oauth2``...) to a router holding only
the routes whose own path starts with that literal segment, plus those whose first segment is a
parameter (they may match anything), in the app's order. A route that cannot match a path is left
out, so which route answers, and every partial match (405), slash redirect and 404, is what the full
list would have given.

The table is built on the first request and again whenever the app's own route list changes; the
routers the app includes are taken as complete once included.

The app's own ``routes`` are untouched: the OpenAPI document, ``url_for`` (the request's router is
still the app's) and anything that walks the routes see the same list.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRouter, iter_route_contexts
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Host, Mount
from starlette.types import Receive, Scope, Send

_ANY = None  # the bucket of routes whose first segment is not a literal


def first_segment(path: str) -> str:
    """``"v1"`` for ``/v1/organizations``, ``""`` for ``/``."""
    return path[1:].split("/", 1)[0] if path.startswith("/") else path.split("/", 1)[0]


def _literal_segments(route: BaseRoute) -> set[str] | None:
    """The first path segments ``route`` can match, or None when it may match any path."""
    if isinstance(route, Host):
        return None
    segments: set[str] = set()
    for context in iter_route_contexts([route]):
        path = context.path
        if not isinstance(path, str) or not path.startswith("/"):
            return None
        segment = first_segment(path)
        if "{" in segment or (isinstance(context.original_route, Mount) and segment == ""):
            return None
        segments.add(segment)
    return segments


class PrefixDispatch:
    """The router's entry point, choosing the routes for a path's first segment (module docstring)."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.entry = router.middleware_stack
        self._version: int | None = None
        self._buckets: dict[str | None, APIRouter] = {}

    def _bucket_router(self, routes: list[BaseRoute]) -> APIRouter:
        bucket = APIRouter(routes=routes, redirect_slashes=self.router.redirect_slashes, default=self.router.default)
        bucket.form_limits = self.router.form_limits
        bucket._low_priority_routes = self.router._low_priority_routes
        return bucket

    def _table(self) -> dict[str | None, APIRouter]:
        # the app's own list (a route added to the app after the first request); the routers it
        # includes are complete when included (walking them all for their versions costs more per
        # request than the matching this saves)
        version = self.router._routes_version + len(self.router.routes)
        if version == self._version:
            return self._buckets
        by_route = [(route, _literal_segments(route)) for route in self.router.routes]
        names = {segment for _, segments in by_route if segments is not None for segment in segments}
        buckets: dict[str | None, APIRouter] = {
            name: self._bucket_router([r for r, segments in by_route if segments is None or name in segments])
            for name in names}
        buckets[_ANY] = self._bucket_router([r for r, segments in by_route if segments is None])
        self._buckets, self._version = buckets, version
        return buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.entry != self.router.app:
            await self.entry(scope, receive, send)
            return
        table = self._table()
        bucket = table.get(first_segment(get_route_path(scope))) or table[_ANY]
        scope.setdefault("router", self.router)  # url_for and the like see the app's whole router
        await bucket.app(scope, receive, send)


def install_prefix_dispatch(app: FastAPI) -> None:
    """Match each request only against the routes that can match its first path segment."""
    app.router.middleware_stack = PrefixDispatch(app.router)
