"""``/scim/v2/{directory}/Groups``: what differs for groups (``core.directory_groups``); the routes
are made by ``resource.resource_routes``.

Every answer is projected as the request asked (RFC 7644 §3.5.2: "subject to the attributes query
parameter"): a client that leaves ``members`` out (Entra ID does) spares reading and rendering
thousands of them."""

from __future__ import annotations

from typing import Any

from keyhall.api.scim.resource import Rendered, ScimResource, Shown, resource_routes
from keyhall.core import directory_groups, directory_search
from keyhall.core.directory_sync import Sync


def _read(sync: Sync, group_id: str, shown: Shown) -> Rendered:
    group, members = directory_groups.get_group(
        sync, group_id, with_members=directory_groups.wants_members(shown.attributes, shown.excluded))
    return (directory_groups.render(sync, group, members, attributes=shown.attributes, excluded=shown.excluded),
            directory_groups.etag(group))


def _create(sync: Sync, body: Any, shown: Shown) -> Rendered:
    return _read(sync, directory_groups.create_group(sync, body).id, shown)


def _replace(sync: Sync, group_id: str, body: Any, expected: int | None, shown: Shown) -> Rendered:
    return _read(sync, directory_groups.replace_group(sync, group_id, body, expected_version=expected).id, shown)


def _patch(sync: Sync, group_id: str, body: Any, expected: int | None, shown: Shown) -> Rendered:
    return _read(sync, directory_groups.patch_group(sync, group_id, body, expected_version=expected).id, shown)


def _delete(sync: Sync, group_id: str, expected: int | None) -> None:
    directory_groups.delete_group(sync, group_id, expected_version=expected)


routes = resource_routes(ScimResource(path="Groups", search=directory_search.list_groups, read=_read,
                                      create=_create, replace=_replace, patch=_patch, delete=_delete))
