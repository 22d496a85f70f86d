"""Queries of a directory's resources: a list of one type (``GET /Users``, ``POST /Users/.search``)
and the search across both types at the service root (``POST /.search``, RFC 7644 §3.4.3).

At the root, a filter on an attribute only one type has matches nothing of the other type (RFC
7644 §3.4.2.1: evaluated as false); a filter neither type can run is ``invalidFilter``. Users come
first, then groups; ``startIndex``/``count`` run across both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyhall.core import directory_groups, directory_users
from keyhall.core.directory_sync import Sync, Window, window
from keyhall.errors import InvalidInput
from keyhall.protocols.scim.resources import SearchParams


@dataclass(frozen=True)
class Listed:
    resources: list[dict[str, Any]]
    total: int
    start_index: int


def list_users(sync: Sync, params: SearchParams) -> Listed:
    page = window("User", params.filter, params.start_index, params.count)
    found, groups = directory_users.list_users(sync, page)
    items = [directory_users.render(sync, u, groups.get(u.id, []), attributes=params.attributes,
                                    excluded=params.excluded_attributes) for u in found.items]
    return Listed(items, found.total, page.start_index)


def list_groups(sync: Sync, params: SearchParams) -> Listed:
    page = window("Group", params.filter, params.start_index, params.count)
    with_members = directory_groups.wants_members(params.attributes, params.excluded_attributes)
    found, members = directory_groups.list_groups(sync, page, with_members=with_members)
    items = [directory_groups.render(sync, g, members.get(g.id, []), attributes=params.attributes,
                                     excluded=params.excluded_attributes) for g in found.items]
    return Listed(items, found.total, page.start_index)


def _window_or_none(resource: str, params: SearchParams) -> tuple[Window | None, InvalidInput | None]:
    try:
        return window(resource, params.filter, params.start_index, params.count), None
    except InvalidInput as exc:
        return None, exc


def search_all(sync: Sync, params: SearchParams) -> Listed:
    users_page, users_error = _window_or_none("User", params)
    groups_page, _ = _window_or_none("Group", params)
    if users_page is None and groups_page is None:
        assert users_error is not None
        raise users_error
    page = users_page or groups_page
    assert page is not None
    resources: list[dict[str, Any]] = []
    total = 0
    offset, limit = page.offset, page.limit
    if users_page is not None:
        counted = sync.uow.directory_users.list_slice(sync.directory.id, users_page.where, offset=0, limit=0).total
        total += counted
        if offset < counted and limit > 0:
            listed = list_users(sync, SearchParams(params.filter, str(offset + 1), str(limit), params.attributes,
                                                   params.excluded_attributes))
            resources += listed.resources
        offset = max(offset - counted, 0)
        limit -= len(resources)
    if groups_page is not None:
        counted = sync.uow.directory_groups.list_slice(sync.directory.id, groups_page.where, offset=0, limit=0).total
        total += counted
        if offset < counted and limit > 0:
            listed = list_groups(sync, SearchParams(params.filter, str(offset + 1), str(limit), params.attributes,
                                                    params.excluded_attributes))
            resources += listed.resources
    return Listed(resources, total, page.start_index)
