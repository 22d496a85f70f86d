"""``/scim/v2/{directory}/Groups``: one core call per request (``core.directory_groups``)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import PREFIX, Body, IfMatch, SyncDep, list_response, respond
from keyhall.core import directory_groups, directory_search
from keyhall.protocols.scim.resources import SearchParams, parse_search, split_list

router = APIRouter(prefix=PREFIX + "/{directory_id}/Groups", tags=["scim"])


@router.get("")
def list_groups(sync: SyncDep, filter: str | None = None, startIndex: str | None = None,
                count: str | None = None, attributes: str | None = None,
                excludedAttributes: str | None = None) -> JSONResponse:
    found = directory_search.list_groups(sync, SearchParams(filter, startIndex, count, split_list(attributes),
                                                            split_list(excludedAttributes)))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("/.search")
def search_groups(sync: SyncDep, body: Body) -> JSONResponse:
    found = directory_search.list_groups(sync, parse_search(body))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("")
def create_group(sync: SyncDep, body: Body) -> JSONResponse:
    group = directory_groups.create_group(sync, body)
    _, members = directory_groups.get_group(sync, group.id)
    rendered = directory_groups.render(sync, group, members)
    return respond(rendered, 201, etag=directory_groups.etag(group), location=rendered["meta"]["location"])


@router.get("/{group_id}")
def get_group(group_id: str, sync: SyncDep, attributes: str | None = None,
              excludedAttributes: str | None = None) -> JSONResponse:
    wanted, excluded = split_list(attributes), split_list(excludedAttributes)
    group, members = directory_groups.get_group(sync, group_id,
                                                with_members=directory_groups.wants_members(wanted, excluded))
    return respond(directory_groups.render(sync, group, members, attributes=wanted, excluded=excluded),
                   etag=directory_groups.etag(group))


@router.put("/{group_id}")
def replace_group(group_id: str, sync: SyncDep, body: Body, expected: IfMatch) -> JSONResponse:
    group = directory_groups.replace_group(sync, group_id, body, expected_version=expected)
    _, members = directory_groups.get_group(sync, group.id)
    return respond(directory_groups.render(sync, group, members), etag=directory_groups.etag(group))


@router.patch("/{group_id}")
def patch_group(group_id: str, sync: SyncDep, body: Body, expected: IfMatch) -> JSONResponse:
    group = directory_groups.patch_group(sync, group_id, body, expected_version=expected)
    _, members = directory_groups.get_group(sync, group.id)
    return respond(directory_groups.render(sync, group, members), etag=directory_groups.etag(group))


@router.delete("/{group_id}", status_code=204)
def delete_group(group_id: str, sync: SyncDep, expected: IfMatch) -> Response:
    directory_groups.delete_group(sync, group_id, expected_version=expected)
    return Response(status_code=204)
