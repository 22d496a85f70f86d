"""``/scim/v2/{directory}/Users``: one core call per request (``core.directory_users``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import PREFIX, Body, IfMatch, in_directory, list_response, respond
from keyhall.core import directory_search, directory_users
from keyhall.core.directory_sync import Sync
from keyhall.protocols.scim.resources import SearchParams, parse_search, split_list

router = APIRouter(prefix=PREFIX + "/{directory_id}/Users", tags=["scim"], include_in_schema=False)

Rendered = tuple[dict[str, Any], str]


def _reread(sync: Sync, user: Any) -> Rendered:
    _, groups = directory_users.get_user(sync, user.id)
    return directory_users.render(sync, user, groups), directory_users.etag(user)


@router.get("")
async def list_users(directory_id: str, request: Request, filter: str | None = None, startIndex: str | None = None,
                     count: str | None = None, attributes: str | None = None,
                     excludedAttributes: str | None = None) -> JSONResponse:
    params = SearchParams(filter, startIndex, count, split_list(attributes), split_list(excludedAttributes))
    found = await in_directory(request, directory_id, lambda sync: directory_search.list_users(sync, params))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("/.search")
async def search_users(directory_id: str, request: Request, body: Body) -> JSONResponse:
    params = parse_search(body)
    found = await in_directory(request, directory_id, lambda sync: directory_search.list_users(sync, params))
    return respond(list_response(found.resources, found.total, found.start_index))


@router.post("")
async def create_user(directory_id: str, request: Request, body: Body) -> JSONResponse:
    def create(sync: Sync) -> Rendered:
        user = directory_users.create_user(sync, body)
        return directory_users.render(sync, user, []), directory_users.etag(user)

    rendered, etag = await in_directory(request, directory_id, create)
    return respond(rendered, 201, etag=etag, location=rendered["meta"]["location"])


@router.get("/{user_id}")
async def get_user(directory_id: str, user_id: str, request: Request, attributes: str | None = None,
                   excludedAttributes: str | None = None) -> JSONResponse:
    def read(sync: Sync) -> Rendered:
        user, groups = directory_users.get_user(sync, user_id)
        return (directory_users.render(sync, user, groups, attributes=split_list(attributes),
                                       excluded=split_list(excludedAttributes)), directory_users.etag(user))

    rendered, etag = await in_directory(request, directory_id, read)
    return respond(rendered, etag=etag)


@router.put("/{user_id}")
async def replace_user(directory_id: str, user_id: str, request: Request, body: Body,
                       expected: IfMatch) -> JSONResponse:
    rendered, etag = await in_directory(request, directory_id, lambda sync: _reread(
        sync, directory_users.replace_user(sync, user_id, body, expected_version=expected)))
    return respond(rendered, etag=etag)


@router.patch("/{user_id}")
async def patch_user(directory_id: str, user_id: str, request: Request, body: Body,
                     expected: IfMatch) -> JSONResponse:
    rendered, etag = await in_directory(request, directory_id, lambda sync: _reread(
        sync, directory_users.patch_user(sync, user_id, body, expected_version=expected)))
    return respond(rendered, etag=etag)


@router.delete("/{user_id}", status_code=204)
async def delete_user(directory_id: str, user_id: str, request: Request, expected: IfMatch) -> Response:
    await in_directory(request, directory_id,
                       lambda sync: directory_users.delete_user(sync, user_id, expected_version=expected))
    return Response(status_code=204)
