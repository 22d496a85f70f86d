"""``/scim/v2/{directory}/Users``: what differs for users (``core.directory_users``); the routes
are made by ``resource.resource_routes``."""

from __future__ import annotations

from typing import Any

from keyhall.api.scim.resource import Rendered, ScimResource, Shown, resource_routes
from keyhall.core import directory_search, directory_users
from keyhall.core.directories import DirectoryUser
from keyhall.core.directory_sync import Sync


def _show(sync: Sync, user: DirectoryUser, groups: list[tuple[str, str]], shown: Shown) -> Rendered:
    return (directory_users.render(sync, user, groups, attributes=shown.attributes, excluded=shown.excluded),
            directory_users.etag(user))


def _read(sync: Sync, user_id: str, shown: Shown) -> Rendered:
    user, groups = directory_users.get_user(sync, user_id)
    return _show(sync, user, groups, shown)


def _create(sync: Sync, body: Any, shown: Shown) -> Rendered:
    return _show(sync, directory_users.create_user(sync, body), [], shown)  # a new user is in no group yet


def _replace(sync: Sync, user_id: str, body: Any, expected: int | None, shown: Shown) -> Rendered:
    return _read(sync, directory_users.replace_user(sync, user_id, body, expected_version=expected).id, shown)


def _patch(sync: Sync, user_id: str, body: Any, expected: int | None, shown: Shown) -> Rendered:
    return _read(sync, directory_users.patch_user(sync, user_id, body, expected_version=expected).id, shown)


def _delete(sync: Sync, user_id: str, expected: int | None) -> None:
    directory_users.delete_user(sync, user_id, expected_version=expected)


routes = resource_routes(ScimResource(path="Users", search=directory_search.list_users, read=_read, create=_create,
                                      replace=_replace, patch=_patch, delete=_delete, bounded_reads=True))
