"""SCIM Groups of a directory (RFC 7644 §3.3-3.6), with their members.

Members are user ids of the same directory; an id the directory does not hold is refused
(``invalidValue``), never stored. Membership changes are set operations run as a few bulk
statements (``protocols.scim.members``), so a PATCH adding a thousand members holds its locks
for a few statements, not a thousand round trips. Okta sends members in POST and PUT: they are
kept. A user's groups reach their ``groups`` claim at their next sign-in.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from keyhall.core.directories import DirectoryGroup, Member
from keyhall.core.directory_sync import Sync, Window, check_version
from keyhall.core.ports import Slice
from keyhall.errors import Conflict, NotFound
from keyhall.protocols.scim import resources as scim
from keyhall.protocols.scim.members import displays_of, final_members, split_group_patch

RESOURCE = "Group"


def _get(sync: Sync, group_id: str) -> DirectoryGroup:
    group = sync.uow.directory_groups.get(sync.directory.id, group_id)
    if group is None:
        raise NotFound(f"group {group_id} not found")
    return group


def _display_name(resource: Any) -> str:
    value = (resource.display_name or "").strip()
    if not value or len(value) > 512:
        raise scim.scim_invalid("displayName: must be 1 to 512 characters", scim_type="invalidValue",
                                field="displayName")
    return value


def _member_ids(resource: Any) -> set[str]:
    return {str(m.value) for m in (resource.members or []) if m.value}


def _member_displays(resource: Any) -> dict[str, str]:
    return {str(m.value): str(m.display)[:512] for m in (resource.members or []) if m.value and m.display}


def _check_members(sync: Sync, user_ids: Collection[str]) -> None:
    if not user_ids:
        return
    known = sync.uow.directory_users.existing(sync.directory.id, user_ids)
    unknown = sorted(set(user_ids) - set(known))
    if unknown:
        raise scim.scim_invalid(f"members: {unknown[0]} is not a user of this directory"
                                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                                scim_type="invalidValue", field="members")


def render(sync: Sync, group: DirectoryGroup, members: list[Member], *, attributes: list[str] | None = None,
           excluded: list[str] | None = None) -> dict[str, Any]:
    meta = scim.meta(RESOURCE, created=group.created_at, last_modified=group.updated_at,
                     location=f"{sync.base_url}/Groups/{group.id}", version=group.version)
    resource = scim.load_group(group.attributes, id=group.id, members=[(m.id, m.display) for m in members],
                               meta=meta, users_url=f"{sync.base_url}/Users")
    return scim.render(resource, attributes=attributes, excluded_attributes=excluded)


def etag(group: DirectoryGroup) -> str:
    return f'W/"{group.version}"'


def wants_members(attributes: list[str] | None, excluded: list[str] | None) -> bool:
    """Whether a response shows members (Entra ID asks for groups without them, to go fast)."""
    if attributes:
        return any(a.lower().split(".")[0].rsplit(":", 1)[-1] == "members" for a in attributes)
    return not any(a.lower().split(".")[0].rsplit(":", 1)[-1] == "members" for a in (excluded or []))


def get_group(sync: Sync, group_id: str, *, with_members: bool = True) -> tuple[DirectoryGroup, list[Member]]:
    group = _get(sync, group_id)
    members = sync.uow.directory_groups.members([group.id]).get(group.id, []) if with_members else []
    return group, members


def list_groups(sync: Sync, window: Window, *, with_members: bool) -> tuple[Slice[DirectoryGroup],
                                                                            dict[str, list[Member]]]:
    found = sync.uow.directory_groups.list_slice(sync.directory.id, window.where, offset=window.offset,
                                                limit=window.limit)
    members = sync.uow.directory_groups.members([g.id for g in found.items]) if with_members and found.items else {}
    return found, members


def create_group(sync: Sync, body: Any) -> DirectoryGroup:
    resource = scim.parse_group(body)
    members = _member_ids(resource)
    _check_members(sync, members)
    external_id = resource.external_id
    group = DirectoryGroup(id=str(uuid.uuid4()), organization_id=sync.directory.organization_id,
                           directory_id=sync.directory.id, display_name=_display_name(resource),
                           external_id=str(external_id) if external_id is not None else None,
                           attributes=scim.stored_attributes(resource), created_at=sync.now, updated_at=sync.now)
    sync.uow.directory_groups.add(group)
    sync.uow.directory_groups.add_members(group.id, members, _member_displays(resource))
    sync.refresh_groups_claims(members)
    sync.audit("directory_group.created", "directory_group", group.id,
               {"display_name": {"from": None, "to": group.display_name}, "members_added": len(members)})
    sync.commit()
    return group


def _store(sync: Sync, group: DirectoryGroup, resource: Any | None, target: set[str] | None,
           expected_version: int | None, current: set[str] | None = None,
           displays: dict[str, str] | None = None) -> DirectoryGroup:
    """Write the group's new attributes (``resource``) and members (``target``), as one change."""
    check_version(group.version, expected_version)
    changes: dict[str, Any] = {}
    affected: set[str] = set()  # whose groups claim this change alters
    if resource is not None:
        name, external_id = _display_name(resource), resource.external_id
        if name != group.display_name:
            changes["display_name"] = {"from": group.display_name, "to": name}
        attributes = scim.stored_attributes(resource)
        if attributes != group.attributes and not changes:
            changes["attributes"] = "changed"
        group.display_name, group.attributes = name, attributes
        group.external_id = str(external_id) if external_id is not None else None
    if target is not None:
        current = current if current is not None else sync.uow.directory_groups.member_ids(group.id)
        added, removed = target - current, current - target
        _check_members(sync, added)
        sync.uow.directory_groups.remove_members(group.id, removed)
        sync.uow.directory_groups.add_members(group.id, added, displays or {})
        affected |= added | removed
        if added:
            changes["members_added"] = len(added)
        if removed:
            changes["members_removed"] = len(removed)
    if not changes:
        return group
    if "display_name" in changes:  # the claim carries the name: every member's changes
        affected |= target if target is not None else sync.uow.directory_groups.member_ids(group.id)
    group.updated_at = sync.now
    if not sync.uow.directory_groups.save(group, expected_version=group.version):
        sync.uow.rollback()
        raise Conflict("the group changed while this request ran; read it again")
    sync.refresh_groups_claims(affected)
    sync.audit("directory_group.updated", "directory_group", group.id, changes)
    sync.commit()
    return group


def replace_group(sync: Sync, group_id: str, body: Any, *, expected_version: int | None) -> DirectoryGroup:
    """PUT: attributes and members become those of the body (Okta sends members here)."""
    group = _get(sync, group_id)
    resource = scim.parse_group(body, replacement=True)
    return _store(sync, group, resource, _member_ids(resource), expected_version,
                  displays=_member_displays(resource))


def patch_group(sync: Sync, group_id: str, body: Any, *, expected_version: int | None) -> DirectoryGroup:
    """PATCH: member operations as set changes, the rest applied to the group's attributes; all in
    one transaction, so a request fails as a whole."""
    group = _get(sync, group_id)
    scim.parse_patch(body, scim.GroupResource)  # the whole message is validated before anything applies
    split = split_group_patch(body)
    resource = None
    if split.rest is not None:
        patch = scim.parse_patch(split.rest, scim.GroupResource)
        meta = scim.meta(RESOURCE, created=group.created_at, last_modified=group.updated_at, location="", version=1)
        resource = scim.load_group(group.attributes, id=group.id, members=[], meta=meta, users_url="")
        scim.apply_patch(patch, resource)
    target = current = None
    if split.members:
        current = sync.uow.directory_groups.member_ids(group.id)
        target = final_members(current, split.members)
    return _store(sync, group, resource, target, expected_version, current, displays=displays_of(split.members))


def delete_group(sync: Sync, group_id: str, *, expected_version: int | None) -> None:
    group = _get(sync, group_id)
    check_version(group.version, expected_version)
    members = sync.uow.directory_groups.member_ids(group.id)
    sync.uow.directory_groups.delete(group.id)
    sync.refresh_groups_claims(members)
    sync.audit("directory_group.deleted", "directory_group", group.id,
               {"display_name": {"from": group.display_name, "to": None}})
    sync.commit()
