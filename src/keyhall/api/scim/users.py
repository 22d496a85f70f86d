"""``/scim/v2/{directory}/Users``: one core call per request (``core.directory_users``)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import PREFIX, Body, IfMatch, SyncDep, list_response, respond
from keyhall.core import directory_search, directory_users
from keyhall.protocols.scim.resources import SearchParams, parse_search, split_list

router = APIRouter(prefix=PREFIX + "/{directory_id}/Users", tags=["scim"])


@router.get("")
def list_users(sync: SyncDep, filter: str | None = None, startIndex: str | None = None,
               count: str | None = None, attributes: str | None = None,
               excludedAttributes: str | None = None) -> JSONResponse:
    found = directory_search.list_users(sync, SearchParams(filter, startIndex, count, split_list(attributes),
                                                           split_list(excludedAttributes)))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("/.search")
def search_users(sync: SyncDep, body: Body) -> JSONResponse:
    found = directory_search.list_users(sync, parse_search(body))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("")
def create_user(sync: SyncDep, body: Body) -> JSONResponse:
    user = directory_users.create_user(sync, body)
    rendered = directory_users.render(sync, user, [])
    return respond(rendered, 201, etag=directory_users.etag(user), location=rendered["meta"]["location"])


@router.get("/{user_id}")
def get_user(user_id: str, sync: SyncDep, attributes: str | None = None,
             excludedAttributes: str | None = None) -> JSONResponse:
    user, groups = directory_users.get_user(sync, user_id)
    return respond(directory_users.render(sync, user, groups, attributes=split_list(attributes),
                                          excluded=split_list(excludedAttributes)),
                   etag=directory_users.etag(user))


@router.put("/{user_id}")
def replace_user(user_id: str, sync: SyncDep, body: Body, expected: IfMatch) -> JSONResponse:
    user = directory_users.replace_user(sync, user_id, body, expected_version=expected)
    _, groups = directory_users.get_user(sync, user.id)
    return respond(directory_users.render(sync, user, groups), etag=directory_users.etag(user))


@router.patch("/{user_id}")
def patch_user(user_id: str, sync: SyncDep, body: Body, expected: IfMatch) -> JSONResponse:
    user = directory_users.patch_user(sync, user_id, body, expected_version=expected)
    _, groups = directory_users.get_user(sync, user.id)
    return respond(directory_users.render(sync, user, groups), etag=directory_users.etag(user))


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: str, sync: SyncDep, expected: IfMatch) -> Response:
    directory_users.delete_user(sync, user_id, expected_version=expected)
    return Response(status_code=204)
