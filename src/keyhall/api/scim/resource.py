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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from keyhall.api.scim.common import if_match, in_directory, list_response, query, read_body, respond
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
    """What a resource type does; ``resource_routes`` serves it."""

    path: str  # "Users", "Groups"
    search: Callable[[Sync, SearchParams], Listed]
    read: Callable[[Sync, str, Shown], Rendered]
    create: Callable[[Sync, Any, Shown], Rendered]
    replace: Callable[[Sync, str, Any, int | None, Shown], Rendered]
    patch: Callable[[Sync, str, Any, int | None, Shown], Rendered]
    delete: Callable[[Sync, str, int | None], None]
    #: whether a read's answer is small whatever is stored (``common.in_directory``): a page of users
    #: is; a group's members are not
    bounded_reads: bool = False


def _shown(request: Request) -> Shown:
    return Shown(split_list(query(request, "attributes")), split_list(query(request, "excludedAttributes")))


def resource_routes(resource: ScimResource) -> list[BaseRoute]:
    """The routes of ``/{directory_id}/{resource.path}`` (the parameters are read in the order the
    checks apply: the body, then ``If-Match``, then the directory's token)."""

    async def listed(request: Request, params: SearchParams) -> JSONResponse:
        found = await in_directory(request, request.path_params["directory_id"],
                                   lambda sync: resource.search(sync, params), read_only=True,
                                   bounded=resource.bounded_reads)
        return respond(list_response(found.resources, found.total, found.start_index))

    async def list_resources(request: Request) -> JSONResponse:
        return await listed(request, SearchParams(
            query(request, "filter"), query(request, "startIndex"), query(request, "count"),
            split_list(query(request, "attributes")), split_list(query(request, "excludedAttributes"))))

    async def search_resources(request: Request) -> JSONResponse:
        return await listed(request, parse_search(await read_body(request)))

    async def create_resource(request: Request) -> JSONResponse:
        body, shown = await read_body(request), _shown(request)
        rendered, etag = await in_directory(request, request.path_params["directory_id"],
                                            lambda sync: resource.create(sync, body, shown))
        return respond(rendered, 201, etag=etag, location=rendered["meta"]["location"])

    async def read_resource(request: Request) -> JSONResponse:
        shown, resource_id = _shown(request), request.path_params["resource_id"]
        rendered, etag = await in_directory(request, request.path_params["directory_id"],
                                            lambda sync: resource.read(sync, resource_id, shown), read_only=True,
                                            bounded=resource.bounded_reads)
        return respond(rendered, etag=etag)

    async def replace_resource(request: Request) -> JSONResponse:
        body, expected, shown = await read_body(request), if_match(request), _shown(request)
        resource_id = request.path_params["resource_id"]
        rendered, etag = await in_directory(request, request.path_params["directory_id"], lambda sync: resource.replace(
            sync, resource_id, body, expected, shown))
        return respond(rendered, etag=etag)

    async def patch_resource(request: Request) -> JSONResponse:
        body, expected, shown = await read_body(request), if_match(request), _shown(request)
        resource_id = request.path_params["resource_id"]
        rendered, etag = await in_directory(request, request.path_params["directory_id"], lambda sync: resource.patch(
            sync, resource_id, body, expected, shown))
        return respond(rendered, etag=etag)

    async def delete_resource(request: Request) -> Response:
        expected, resource_id = if_match(request), request.path_params["resource_id"]
        await in_directory(request, request.path_params["directory_id"],
                           lambda sync: resource.delete(sync, resource_id, expected))
        return Response(status_code=204)

    path = f"/{{directory_id}}/{resource.path}"
    return [
        Route(path, list_resources, methods=["GET"]),
        Route(f"{path}/.search", search_resources, methods=["POST"]),
        Route(path, create_resource, methods=["POST"]),
        Route(f"{path}/{{resource_id}}", read_resource, methods=["GET"]),
        Route(f"{path}/{{resource_id}}", replace_resource, methods=["PUT"]),
        Route(f"{path}/{{resource_id}}", patch_resource, methods=["PATCH"]),
        Route(f"{path}/{{resource_id}}", delete_resource, methods=["DELETE"]),
    ]
