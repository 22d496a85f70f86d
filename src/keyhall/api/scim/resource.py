"""One handler shape for every SCIM resource type (RFC 7644 §3.3-3.6): list, ``.search``, create,
read, replace, patch and delete under ``/scim/v2/{directory}/{Type}``.

A resource module (``users.py``, ``groups.py``) says only what differs: its core calls and how it
renders one resource. Each route makes one core call as the authenticated directory
(``common.in_directory``) and answers the SCIM media type, an ``ETag`` and, on creation, a
``Location``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import Body, IfMatch, in_directory, list_response, respond
from keyhall.core.directory_search import Listed
from keyhall.core.directory_sync import Sync
from keyhall.protocols.scim.resources import SearchParams, parse_search, split_list

#: A resource as the response shows it, and its ETag.
Rendered = tuple[dict[str, Any], str]


@dataclass(frozen=True)
class Shown:
    """The ``attributes`` / ``excludedAttributes`` a request asked for (RFC 7644 §3.4.2.5, §3.9)."""

    attributes: list[str] | None = None
    excluded: list[str] | None = None


@dataclass(frozen=True)
class ScimResource:
    """What a resource type does; ``resource_router`` serves it."""

    path: str  # "Users", "Groups"
    search: Callable[[Sync, SearchParams], Listed]
    read: Callable[[Sync, str, Shown], Rendered]
    create: Callable[[Sync, Any, Shown], Rendered]
    replace: Callable[[Sync, str, Any, int | None, Shown], Rendered]
    patch: Callable[[Sync, str, Any, int | None, Shown], Rendered]
    delete: Callable[[Sync, str, int | None], None]


def _shown(attributes: str | None, excluded: str | None) -> Shown:
    return Shown(split_list(attributes), split_list(excluded))


def resource_router(resource: ScimResource) -> APIRouter:
    router = APIRouter(prefix=f"/{{directory_id}}/{resource.path}", tags=["scim"], include_in_schema=False)

    async def listed(request: Request, directory_id: str, params: SearchParams) -> JSONResponse:
        found = await in_directory(request, directory_id, lambda sync: resource.search(sync, params),
                                   read_only=True)
        return respond(list_response(found.resources, found.total, found.start_index))

    @router.get("")
    async def list_resources(directory_id: str, request: Request, filter: str | None = None,
                             startIndex: str | None = None, count: str | None = None, attributes: str | None = None,
                             excludedAttributes: str | None = None) -> JSONResponse:
        return await listed(request, directory_id, SearchParams(
            filter, startIndex, count, split_list(attributes), split_list(excludedAttributes)))

    @router.post("/.search")
    async def search_resources(directory_id: str, request: Request, body: Body) -> JSONResponse:
        return await listed(request, directory_id, parse_search(body))

    @router.post("")
    async def create_resource(directory_id: str, request: Request, body: Body, attributes: str | None = None,
                              excludedAttributes: str | None = None) -> JSONResponse:
        shown = _shown(attributes, excludedAttributes)
        rendered, etag = await in_directory(request, directory_id, lambda sync: resource.create(sync, body, shown))
        return respond(rendered, 201, etag=etag, location=rendered["meta"]["location"])

    @router.get("/{resource_id}")
    async def read_resource(directory_id: str, resource_id: str, request: Request, attributes: str | None = None,
                            excludedAttributes: str | None = None) -> JSONResponse:
        shown = _shown(attributes, excludedAttributes)
        rendered, etag = await in_directory(request, directory_id,
                                            lambda sync: resource.read(sync, resource_id, shown), read_only=True)
        return respond(rendered, etag=etag)

    @router.put("/{resource_id}")
    async def replace_resource(directory_id: str, resource_id: str, request: Request, body: Body,
                               expected: IfMatch, attributes: str | None = None,
                               excludedAttributes: str | None = None) -> JSONResponse:
        shown = _shown(attributes, excludedAttributes)
        rendered, etag = await in_directory(request, directory_id, lambda sync: resource.replace(
            sync, resource_id, body, expected, shown))
        return respond(rendered, etag=etag)

    @router.patch("/{resource_id}")
    async def patch_resource(directory_id: str, resource_id: str, request: Request, body: Body,
                             expected: IfMatch, attributes: str | None = None,
                             excludedAttributes: str | None = None) -> JSONResponse:
        shown = _shown(attributes, excludedAttributes)
        rendered, etag = await in_directory(request, directory_id, lambda sync: resource.patch(
            sync, resource_id, body, expected, shown))
        return respond(rendered, etag=etag)

    @router.delete("/{resource_id}", status_code=204)
    async def delete_resource(directory_id: str, resource_id: str, request: Request, expected: IfMatch) -> Response:
        await in_directory(request, directory_id, lambda sync: resource.delete(sync, resource_id, expected))
        return Response(status_code=204)

    return router
