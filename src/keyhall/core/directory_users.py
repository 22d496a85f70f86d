"""SCIM Users of a directory (RFC 7644 §3.3-3.6): create, read, list, replace, patch, delete.

A directory user is an organization user. Deactivating one (``active: false`` by PUT or PATCH)
takes their access away in the same transaction, through the same port the native users API
uses (``ports.GrantRepository.revoke_user``: every token family and refresh token revoked,
so refresh and userinfo refuse at once); their next sign-in is refused (``user_disabled``).
Reactivating restores sign-in (the person signs in again; revoked tokens stay revoked). DELETE
forgets the user and their token families (``forget_user``), as the native API does.
"""

from __future__ import annotations

import uuid
from typing import Any

from keyhall.core import audit
from keyhall.core.directories import DirectoryUser
from keyhall.core.directory_sync import Sync, Window, check_version
from keyhall.core.ports import Slice
from keyhall.errors import Conflict, NotFound
from keyhall.protocols.scim import resources as scim
from keyhall.protocols.scim.predicates import Compare

RESOURCE = "User"


def _not_found(user_id: str) -> NotFound:
    return NotFound(f"user {user_id} not found")


def _profile(resource: Any) -> dict[str, Any]:
    name = resource.name
    given = name.given_name if name else None
    family = name.family_name if name else None
    display = resource.display_name or (name.formatted if name else None) or \
        (" ".join(p for p in (given, family) if p) or None)
    return {"email": scim.primary_email(resource), "name": display, "given_name": given, "family_name": family}


def _user_name(resource: Any) -> str:
    value = (resource.user_name or "").strip()
    if not value or len(value) > 512:
        raise scim.scim_invalid("userName: must be 1 to 512 characters", scim_type="invalidValue", field="userName")
    return value


def _check_unique(sync: Sync, user_name: str, exclude_id: str | None) -> None:
    if sync.uow.directory_users.user_name_taken(sync.directory.id, user_name, exclude_id=exclude_id):
        raise Conflict(f"userName: {user_name!r} is already taken in this directory", field="userName",
                       details={"scim_type": "uniqueness"})


def _external_id(resource: Any) -> str | None:
    value = resource.external_id
    if value is not None and len(value) > 512:
        raise scim.scim_invalid("externalId: at most 512 characters", scim_type="invalidValue", field="externalId")
    return str(value) if value is not None else None


def render(sync: Sync, user: DirectoryUser, groups: list[tuple[str, str]], *,
           attributes: list[str] | None = None, excluded: list[str] | None = None) -> dict[str, Any]:
    location = f"{sync.base_url}/Users/{user.id}"
    if attributes is None and excluded is None:  # the whole user: from the stored row, no model round trip
        whole = scim.user_response(user.attributes, id=user.id, active=_active(user), groups=groups,
                                   created=user.created_at, last_modified=user.updated_at, location=location,
                                   version=user.version)
        if whole is not None:
            return whole
    meta = scim.meta(RESOURCE, created=user.created_at, last_modified=user.updated_at,
                     location=location, version=user.version)
    resource = scim.load_user(user.attributes, id=user.id, active=_active(user), groups=groups, meta=meta)
    return scim.render(resource, attributes=attributes, excluded_attributes=excluded)


def _active(user: DirectoryUser) -> bool | None:
    """``active`` as SCIM shows it: false when disabled (by the directory or an administrator),
    true when the directory said so, absent when it never did (or removed it); absent counts as
    active for sign-in."""
    if not user.active:
        return False
    return True if "active" in user.attributes else None


def etag(user: DirectoryUser) -> str:
    return f'W/"{user.version}"'


def _get(sync: Sync, user_id: str) -> DirectoryUser:
    user = sync.uow.directory_users.get(sync.directory.id, user_id)
    if user is None:
        raise _not_found(user_id)
    return user


def get_user(sync: Sync, user_id: str) -> tuple[DirectoryUser, list[tuple[str, str]]]:
    user = _get(sync, user_id)
    return user, sync.uow.directory_users.groups_of([user.id]).get(user.id, [])


def list_users(sync: Sync, window: Window) -> tuple[Slice[DirectoryUser], dict[str, list[tuple[str, str]]]]:
    where = window.where
    if (isinstance(where, Compare) and where.field == "user_name" and where.op == "eq" and isinstance(where.value, str)
            and window.offset == 0 and window.limit > 0):  # a lookup by userName: one user at most, one read
        one = sync.uow.directory_users.with_groups_by_user_name(sync.directory.id, where.value)
        if one is None:
            return Slice(items=[], total=0), {}
        return Slice(items=[one[0]], total=1), {one[0].id: one[1]}
    found = sync.uow.directory_users.list_slice(sync.directory.id, window.where, offset=window.offset,
                                               limit=window.limit)
    groups = sync.uow.directory_users.groups_of([u.id for u in found.items]) if found.items else {}
    return found, groups


def create_user(sync: Sync, body: Any) -> DirectoryUser:
    resource = scim.parse_user(body)
    user_name = _user_name(resource)  # unique per directory: the store's key refuses a clash (409)
    user = DirectoryUser(id=str(uuid.uuid4()), organization_id=sync.directory.organization_id,
                         directory_id=sync.directory.id, user_name=user_name, external_id=_external_id(resource),
                         active=resource.active is not False, attributes=scim.stored_attributes(resource),
                         created_at=sync.now, updated_at=sync.now, **_profile(resource))
    sync.uow.directory_users.add(user)
    sync.audit("user.created", "user", user.id, {"user_name": {"from": None, "to": user_name},
                                                 "active": {"from": None, "to": user.active}})
    sync.commit()
    return user


def _write(sync: Sync, user: DirectoryUser, resource: Any, expected_version: int | None, *,
           removed_active_enables: bool = False) -> DirectoryUser:
    """Store ``resource`` as the user's new state; deactivation revokes their sessions.

    ``active`` left out keeps the user's state (a PUT that forgets it switches nobody on); a PATCH
    that removes it (``removed_active_enables``) leaves it unassigned, which counts as active."""
    check_version(user.version, expected_version)
    user_name = _user_name(resource)
    if user_name.lower() != user.user_name.lower():
        _check_unique(sync, user_name, user.id)
    before = {"user_name": user.user_name, "external_id": user.external_id, "active": user.active,
              **{k: getattr(user, k) for k in ("email", "name", "given_name", "family_name")}}
    stored_before = user.attributes
    user.user_name, user.external_id = user_name, _external_id(resource)
    if resource.active is not None:
        user.active = bool(resource.active)
    elif removed_active_enables and "active" in user.attributes:
        user.active = True
    user.attributes = scim.stored_attributes(resource)
    for key, value in _profile(resource).items():
        setattr(user, key, value)
    after = {"user_name": user.user_name, "external_id": user.external_id, "active": user.active,
             **{k: getattr(user, k) for k in ("email", "name", "given_name", "family_name")}}
    changes = audit.diff(before, after)
    if not changes and stored_before == user.attributes:
        return user
    user.updated_at = sync.now
    version = user.version
    if not sync.uow.directory_users.save(user, expected_version=version):
        sync.uow.rollback()
        raise Conflict("the user changed while this request ran; read it again")
    action = "user.updated"
    if "active" in changes:
        action = "user.enabled" if user.active else "user.disabled"
    if not user.active and before["active"]:
        revoked = sync.end_sessions(user.id, reason="user_deprovisioned")
        revoked += sync.uow.grants.revoke_user(user.id, sync.now)
        if revoked:
            changes["sessions_revoked"] = revoked
    if not changes:
        changes = {"attributes": "changed"}
    sync.audit(action, "user", user.id, changes)
    sync.commit()
    return user


def replace_user(sync: Sync, user_id: str, body: Any, *, expected_version: int | None) -> DirectoryUser:
    """PUT (RFC 7644 §3.5.1): the body is the user's whole new state; ``password`` is ignored."""
    user = _get(sync, user_id)
    resource = scim.parse_user(body, replacement=True)
    return _write(sync, user, resource, expected_version)


def patch_user(sync: Sync, user_id: str, body: Any, *, expected_version: int | None) -> DirectoryUser:
    """PATCH (RFC 7644 §3.5.2): every operation applies, or none (and nothing is written)."""
    user = _get(sync, user_id)
    patch = scim.parse_patch(body, scim.UserResource)
    meta = scim.meta(RESOURCE, created=user.created_at, last_modified=user.updated_at, location="", version=1)
    resource = scim.load_user(user.attributes, id=user.id, active=_active(user), groups=[], meta=meta)
    scim.apply_patch(patch, resource)
    return _write(sync, user, resource, expected_version, removed_active_enables=True)


def delete_user(sync: Sync, user_id: str, *, expected_version: int | None) -> None:
    """DELETE (RFC 7644 §3.6): the user, their memberships and every token family go."""
    user = _get(sync, user_id)
    check_version(user.version, expected_version)
    sync.end_sessions(user.id, reason="user_deleted")
    sync.uow.grants.forget_user(user.id)
    sync.uow.directory_users.delete(user.id)
    sync.audit("user.deleted", "user", user.id, {"user_name": {"from": user.user_name, "to": None},
                                                 "email": {"from": user.email, "to": None}})
    sync.commit()
