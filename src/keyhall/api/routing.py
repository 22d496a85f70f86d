"""Dispatch by the path's shape: a request is matched only against the routes that can match it.

The app includes every surface's routers flat (the native API, five dialects, the pages, the provider),
and a router tries its routes in order, one regular expression each, so a ``GET /v1/...`` used to be
tried against every sign-in page first, and then against every ``/v1`` router before its own.
:func:`install_prefix_dispatch` puts, in front of the app's router, a table from a path's *shape* to a
router holding only the routes that can match a path of that shape, in the app's order.

A path's shape is its segments, each kept when some route has it as a literal segment and ``*``
otherwise: ``/v1/organizations/acme/connections/c1`` has the shape ``v1 organizations * connections *``.
A route can match a shape when one of its path templates has as many segments and each literal one
is equal (a parameter matches any segment), and a mount can match the shapes that begin with its
prefix; a route whose template a shape cannot judge (a host, a mount at the root, a ``path``
parameter spanning segments, a segment mixing text and a parameter) is kept for every shape. A
trailing slash is ignored on both sides, so the routes the slash redirect would reach are kept too.
So every route that could match the request is still tried, in the same order: which route answers,
and every partial match (405), slash redirect and 404, is what the full list would have given.

The table is built on first use of each shape and again whenever the app's own route list changes;
the routers the app includes are taken as complete once included. It keeps at most
:data:`MAX_SHAPES` shapes: past them (paths made up to fill it), a request is matched against the
routes of its first segment, as it was before shapes.

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
MAX_SHAPES = 2048
_PARAMETER = None  # a template segment that is one parameter: it matches any one segment
_WILD = object()  # a route whose templates a shape cannot judge: kept for every shape
_REST = object()  # ends a mount's template: the mount matches its prefix and whatever follows

Template = tuple[str | object | None, ...]


def first_segment(path: str) -> str:
    """``"v1"`` for ``/v1/organizations``, ``""`` for ``/``."""
    return path[1:].split("/", 1)[0] if path.startswith("/") else path.split("/", 1)[0]


def _segments(path: str) -> list[str]:
    """A path's segments, a trailing slash ignored: ``/a/b/`` and ``/a/b`` give ``["a", "b"]``."""
    return path.strip("/").split("/") if path.strip("/") else []


def _templates(route: BaseRoute) -> list[Template] | object:
    """The path templates of ``route`` (one per route it holds), each a tuple of literal segments and
    ``None`` for parameters; :data:`_WILD` when a shape cannot judge it."""
    if isinstance(route, Host):
        return _WILD
    templates: list[Template] = []
    for context in iter_route_contexts([route]):
        path = context.path
        if not isinstance(path, str) or not path.startswith("/"):
            return _WILD
        mount = isinstance(context.original_route, Mount)
        if mount and not _segments(path):
            return _WILD  # mounted at the root: any path may be its
        template: list[str | object | None] = []
        for segment in _segments(path):
            if segment.startswith("{") and segment.endswith("}") and segment.count("{") == 1:
                if ":path}" in segment:
                    return _WILD
                template.append(_PARAMETER)
            elif "{" in segment or "}" in segment:
                return _WILD
            else:
                template.append(segment)
        if mount:
            template.append(_REST)
        templates.append(tuple(template))
    return templates


def _fits(template: Template, shape: tuple[str, ...]) -> bool:
    if template and template[-1] is _REST:  # a mount: its prefix, then anything
        template = template[:-1]
        shape = shape[:len(template)]
    return len(template) == len(shape) and all(
        literal is _PARAMETER or literal == segment for literal, segment in zip(template, shape, strict=True))


class PrefixDispatch:
    """The router's entry point, choosing the routes for a path's shape (module docstring)."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.entry = router.middleware_stack
        self._version: int | None = None
        self._routes: list[tuple[BaseRoute, list[Template] | object]] = []
        self._literals: frozenset[str] = frozenset()
        self._shapes: dict[tuple[str, ...], APIRouter] = {}
        self._firsts: dict[str | None, APIRouter] = {}

    def _bucket_router(self, routes: list[BaseRoute]) -> APIRouter:
        bucket = APIRouter(routes=routes, redirect_slashes=self.router.redirect_slashes, default=self.router.default)
        bucket.form_limits = self.router.form_limits
        bucket._low_priority_routes = self.router._low_priority_routes
        return bucket

    def _refresh(self) -> None:
        # the app's own list (a route added to the app after the first request); the routers it
        # includes are complete when included (walking them all for their versions costs more per
        # request than the matching this saves)
        version = self.router._routes_version + len(self.router.routes)
        if version == self._version:
            return
        self._routes = [(route, _templates(route)) for route in self.router.routes]
        self._literals = frozenset(segment for _, templates in self._routes if isinstance(templates, list)
                                   for template in templates for segment in template if isinstance(segment, str))
        self._shapes, self._firsts, self._version = {}, {}, version

    def _for_shape(self, shape: tuple[str, ...]) -> APIRouter:
        return self._bucket_router([route for route, templates in self._routes
                                    if not isinstance(templates, list) or any(_fits(t, shape) for t in templates)])

    def _for_first_segment(self, path: str) -> APIRouter:
        """The routes whose first segment is this path's, or may be anything."""
        first = first_segment(path)
        key = first if first in self._literals else _ANY
        bucket = self._firsts.get(key)
        if bucket is None:
            bucket = self._bucket_router([
                route for route, templates in self._routes
                if not isinstance(templates, list)
                or any(not t or t[0] is _PARAMETER or t[0] == key for t in templates)])
            self._firsts[key] = bucket
        return bucket

    def route_for(self, path: str) -> APIRouter:
        """The router to match ``path`` against (module docstring)."""
        self._refresh()
        literals = self._literals
        shape = tuple(segment if segment in literals else "*" for segment in _segments(path))
        bucket = self._shapes.get(shape)
        if bucket is None:
            if len(self._shapes) >= MAX_SHAPES:
                return self._for_first_segment(path)
            bucket = self._shapes[shape] = self._for_shape(shape)
        return bucket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.entry != self.router.app:
            await self.entry(scope, receive, send)
            return
        bucket = self.route_for(get_route_path(scope))
        scope.setdefault("router", self.router)  # url_for and the like see the app's whole router
        await bucket.app(scope, receive, send)


def install_prefix_dispatch(app: FastAPI) -> None:
    """Match each request only against the routes that can match its first path segment."""
    app.router.middleware_stack = PrefixDispatch(app.router)
