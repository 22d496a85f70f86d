"""``POST /scim/v2/{directory}/.search``: a query across Users and Groups (RFC 7644 §3.4.3)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import Body, in_directory, list_response, respond
from keyhall.core import directory_search
from keyhall.protocols.scim.resources import parse_search

router = APIRouter(prefix="/{directory_id}", tags=["scim"], include_in_schema=False)


@router.post("/.search")
async def search(directory_id: str, request: Request, body: Body) -> JSONResponse:
    params = parse_search(body)
    found = await in_directory(request, directory_id, lambda sync: directory_search.search_all(sync, params),
                               read_only=True)
    return respond(list_response(found.resources, found.total, found.start_index))
