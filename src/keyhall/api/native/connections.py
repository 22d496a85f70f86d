"""``/v1/organizations/{org}/connections``: SSO connections in Keyhall's own shape."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.rendered import RenderedBodies
from keyhall.api.native.schemas import ConnectionOut, ListOut, connection_out
from keyhall.api.responses import json_response
from keyhall.core import connection_service as service
from keyhall.core.connections import ConnectionInput
from keyhall.core.vocabulary import Protocol

router = APIRouter(prefix="/v1/organizations/{org}/connections", tags=["connections"])

Limit = Annotated[int, Query(ge=1, le=200)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


@router.get("", response_model=ListOut[ConnectionOut])
async def list_connections(
    org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, limit: Limit = 50, cursor: str | None = None,
    protocol: Protocol | None = None,
) -> dict[str, Any]:
    page = await run_reads(runtime, uow, lambda: service.list_connections(
        uow, ctx, org, limit=limit, cursor=cursor, protocol=str(protocol) if protocol else None))
    url = runtime.settings.public_url
    return {"data": [connection_out(c, url) for c in page.items], "next_cursor": page.next_cursor}


@router.post("", status_code=201, response_model=ConnectionOut)
def create_connection(org: str, body: ConnectionInput, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    conn = service.create_connection(uow, ctx, org, body, runtime.inspector)
    return json_response(ConnectionOut, connection_out(conn, runtime.settings.public_url), status_code=201,
                         headers={"ETag": service.etag(conn),
                                  "Location": f"/v1/organizations/{org}/connections/{conn.id}"})


_RENDERED = RenderedBodies(ConnectionOut)


@router.get("/{connection_id}", response_model=ConnectionOut)
async def get_connection(org: str, connection_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    conn = await run_reads(runtime, uow, lambda: service.read_connection(uow, ctx, org, connection_id))
    url = runtime.settings.public_url
    body = _RENDERED.get((conn.id, conn.version, url), lambda: connection_out(conn, url))
    return Response(body, media_type="application/json", headers={"ETag": service.etag(conn)})


@router.patch("/{connection_id}", response_model=ConnectionOut)
def update_connection(
    org: str, connection_id: str, body: ConnectionInput, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
    if_match: IfMatch = None,
) -> Response:
    conn = service.update_connection(uow, ctx, org, connection_id, body, runtime.inspector,
                                     expected_version=service.parse_if_match(if_match))
    return json_response(ConnectionOut, connection_out(conn, runtime.settings.public_url),
                         headers={"ETag": service.etag(conn)})


@router.put("/{connection_id}", response_model=ConnectionOut)
def replace_connection(
    org: str, connection_id: str, body: ConnectionInput, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
    if_match: IfMatch = None,
) -> Response:
    conn = service.update_connection(uow, ctx, org, connection_id, body, runtime.inspector,
                                     expected_version=service.parse_if_match(if_match), replace_all=True)
    return json_response(ConnectionOut, connection_out(conn, runtime.settings.public_url),
                         headers={"ETag": service.etag(conn)})


@router.delete("/{connection_id}", status_code=204)
def delete_connection(org: str, connection_id: str, uow: UowDep, ctx: ContextDep, if_match: IfMatch = None) -> Response:
    service.delete_connection(uow, ctx, org, connection_id, expected_version=service.parse_if_match(if_match))
    return Response(status_code=204)
