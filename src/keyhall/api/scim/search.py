"""``POST /scim/v2/{directory}/.search``: a query across Users and Groups (RFC 7644 §3.4.3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from keyhall.api.scim.common import in_directory, list_response, read_body, respond
from keyhall.core import directory_search
from keyhall.protocols.scim.resources import parse_search


async def search(request: Request) -> JSONResponse:
    params = parse_search(await read_body(request))
    found = await in_directory(request, request.path_params["directory_id"],
                               lambda sync: directory_search.search_all(sync, params), read_only=True,
                               bounded=False)  # groups too
    return respond(list_response(found.resources, found.total, found.start_index))


routes: list[BaseRoute] = [Route("/{directory_id}/.search", search, methods=["POST"])]
