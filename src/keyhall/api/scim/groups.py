"""``/scim/v2/{directory}/Groups``: one core call per request (``core.directory_groups``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import PREFIX, Body, IfMatch, in_directory, list_response, respond
from keyhall.core import directory_groups, directory_search
from keyhall.core.directory_sync import Sync
from keyhall.protocols.scim.resources import SearchParams, parse_search, split_list

router = APIRouter(prefix=PREFIX + "/{directory_id}/Groups", tags=["scim"], include_in_schema=False)

Rendered = tuple[dict[str, Any], str]


def _reread(sync: Sync, group: Any, attributes: str | None = None,
            excluded_attributes: str | None = None) -> Rendered:
    """The group as it now is, projected as the request asked (RFC 7644 §3.5.2: "subject to the
    attributes query parameter"): a client that leaves members out spares rendering thousands."""
    wanted, excluded = split_list(attributes), split_list(excluded_attributes)
    _, members = directory_groups.get_group(sync, group.id,
                                            with_members=directory_groups.wants_members(wanted, excluded))
    return (directory_groups.render(sync, group, members, attributes=wanted, excluded=excluded),
            directory_groups.etag(group))


@router.get("")
async def list_groups(directory_id: str, request: Request, filter: str | None = None,
                      startIndex: str | None = None, count: str | None = None, attributes: str | None = None,
                      excludedAttributes: str | None = None) -> JSONResponse:
    params = SearchParams(filter, startIndex, count, split_list(attributes), split_list(excludedAttributes))
    found = await in_directory(request, directory_id, lambda sync: directory_search.list_groups(sync, params))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("/.search")
async def search_groups(directory_id: str, request: Request, body: Body) -> JSONResponse:
    params = parse_search(body)
    found = await in_directory(request, directory_id, lambda sync: directory_search.list_groups(sync, params))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("")
async def create_group(directory_id: str, request: Request, body: Body) -> JSONResponse:
    rendered, etag = await in_directory(request, directory_id,
                                        lambda sync: _reread(sync, directory_groups.create_group(sync, body)))
    return respond(rendered, 201, etag=etag, location=rendered["meta"]["location"])


@router.get("/{group_id}")
async def get_group(directory_id: str, group_id: str, request: Request, attributes: str | None = None,
                    excludedAttributes: str | None = None) -> JSONResponse:
    wanted, excluded = split_list(attributes), split_list(excludedAttributes)

    def read(sync: Sync) -> Rendered:
        group, members = directory_groups.get_group(
            sync, group_id, with_members=directory_groups.wants_members(wanted, excluded))
        return (directory_groups.render(sync, group, members, attributes=wanted, excluded=excluded),
                directory_groups.etag(group))

    rendered, etag = await in_directory(request, directory_id, read)
    return respond(rendered, etag=etag)


@router.put("/{group_id}")
async def replace_group(directory_id: str, group_id: str, request: Request, body: Body, expected: IfMatch,
                        attributes: str | None = None, excludedAttributes: str | None = None) -> JSONResponse:
    rendered, etag = await in_directory(request, directory_id, lambda sync: _reread(
        sync, directory_groups.replace_group(sync, group_id, body, expected_version=expected), attributes,
        excludedAttributes))
    return respond(rendered, etag=etag)


@router.patch("/{group_id}")
async def patch_group(directory_id: str, group_id: str, request: Request, body: Body, expected: IfMatch,
                      attributes: str | None = None, excludedAttributes: str | None = None) -> JSONResponse:
    rendered, etag = await in_directory(request, directory_id, lambda sync: _reread(
        sync, directory_groups.patch_group(sync, group_id, body, expected_version=expected), attributes,
        excludedAttributes))
    return respond(rendered, etag=etag)


@router.delete("/{group_id}", status_code=204)
async def delete_group(directory_id: str, group_id: str, request: Request, expected: IfMatch) -> Response:
    await in_directory(request, directory_id,
                       lambda sync: directory_groups.delete_group(sync, group_id, expected_version=expected))
    return Response(status_code=204)
