"""``POST /scim/v2/{directory}/.search``: a query across Users and Groups (RFC 7644 §3.4.3)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import PREFIX, Body, SyncDep, list_response, respond
from keyhall.core import directory_search
from keyhall.protocols.scim.resources import parse_search

router = APIRouter(prefix=PREFIX + "/{directory_id}", tags=["scim"])


@router.post("/.search")
def search(sync: SyncDep, body: Body) -> JSONResponse:
    found = directory_search.search_all(sync, parse_search(body))
    return respond(list_response(found.resources, found.total, found.start_index))
