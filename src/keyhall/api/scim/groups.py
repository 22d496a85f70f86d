"""``/scim/v2/{directory}/Groups``: one core call per request (``core.directory_groups``)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import PREFIX, Body, IfMatch, SyncDep, list_response, respond
from keyhall.core import directory_groups
from keyhall.core.directory_sync import window
from keyhall.protocols.scim.resources import split_list

router = APIRouter(prefix=PREFIX + "/{directory_id}/Groups", tags=["scim"])


@router.get("")
def list_groups(sync: SyncDep, filter: str | None = None, startIndex: str | None = None,
                count: str | None = None, attributes: str | None = None,
                excludedAttributes: str | None = None) -> JSONResponse:
    wanted, excluded = split_list(attributes), split_list(excludedAttributes)
    page = window("Group", filter, startIndex, count)
    found, members = directory_groups.list_groups(
        sync, page, with_members=directory_groups.wants_members(wanted, excluded))
    items = [directory_groups.render(sync, g, members.get(g.id, []), attributes=wanted, excluded=excluded)
             for g in found.items]
    return respond(list_response(items, found.total, page.start_index))


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
