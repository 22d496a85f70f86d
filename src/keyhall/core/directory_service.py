"""Managing an organization's directories (the native API), bound to storage.

Creating a directory or rotating its token answers the token once; only its SHA-256 is kept, and
rotation replaces it in the same transaction, so the old token fails from the next request on.
Deleting a directory deprovisions its users: each is forgotten with their token families, as a
SCIM DELETE would, and their groups go with the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyhall.core import audit
from keyhall.core.access import require_sso_writer
from keyhall.core.connection_service import Context, organization_for
from keyhall.core.directories import (
    MAX_DIRECTORIES_PER_ORG,
    Counts,
    Directory,
    DirectoryGroup,
    DirectoryProvider,
    DirectoryUser,
    check_name,
    issue_token,
    new_directory,
)
from keyhall.core.ports import Slice, UnitOfWork
from keyhall.core.sessions import end_user_sessions
from keyhall.errors import Conflict, InvalidInput, NotFound


@dataclass(frozen=True)
class WithToken:
    directory: Directory
    token: str


def _event(ctx: Context, directory: Directory, action: str, changes: dict[str, Any]) -> audit.AuditEvent:
    return audit.event(organization_id=directory.organization_id, actor=ctx.principal.actor, action=action,
                       target_type="directory", target_id=directory.id, request_id=ctx.request_id, now=ctx.now,
                       changes=changes)


def _directory(uow: UnitOfWork, ctx: Context, org_ref: str, directory_id: str) -> Directory:
    org = organization_for(uow, ctx, org_ref)
    directory = uow.directories.get(directory_id)
    if directory is None or directory.organization_id != org.id:
        raise NotFound("directory not found", details={"id": directory_id})
    return directory


def create_directory(uow: UnitOfWork, ctx: Context, org_ref: str, *, name: str,
                     provider: str) -> WithToken:
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    try:
        kind = DirectoryProvider(provider)
    except ValueError:
        raise InvalidInput(f"provider: must be one of {', '.join(p.value for p in DirectoryProvider)}",
                           field="provider") from None
    if len(uow.directories.for_organization(org.id)) >= MAX_DIRECTORIES_PER_ORG:
        raise Conflict(f"an organization has at most {MAX_DIRECTORIES_PER_ORG} directories")
    token = issue_token()
    directory = new_directory(org.id, check_name(name), kind, token, ctx.now)
    uow.directories.add(directory)
    uow.audit.add(_event(ctx, directory, "directory.created", {"name": {"from": None, "to": directory.name},
                                                               "provider": {"from": None, "to": kind.value}}))
    uow.commit()
    return WithToken(directory, token.token)


def list_directories(uow: UnitOfWork, ctx: Context, org_ref: str) -> tuple[list[Directory],
                                                                                          dict[str, Counts]]:
    org = organization_for(uow, ctx, org_ref)
    found = uow.directories.for_organization(org.id)
    return found, uow.directories.counts([d.id for d in found])


def get_directory(uow: UnitOfWork, ctx: Context, org_ref: str,
                  directory_id: str) -> tuple[Directory, Counts]:
    directory = _directory(uow, ctx, org_ref, directory_id)
    return directory, uow.directories.counts([directory.id])[directory.id]


def rename_directory(uow: UnitOfWork, ctx: Context, org_ref: str, directory_id: str, *,
                     name: str) -> Directory:
    directory = _directory(uow, ctx, org_ref, directory_id)
    require_sso_writer(ctx.principal, organization_for(uow, ctx, org_ref))
    new_name = check_name(name)
    if new_name != directory.name:
        changes = {"name": {"from": directory.name, "to": new_name}}
        directory.name, directory.updated_at = new_name, ctx.now
        uow.directories.save(directory)
        uow.audit.add(_event(ctx, directory, "directory.updated", changes))
        uow.commit()
    return directory


def rotate_token(uow: UnitOfWork, ctx: Context, org_ref: str, directory_id: str) -> WithToken:
    directory = _directory(uow, ctx, org_ref, directory_id)
    require_sso_writer(ctx.principal, organization_for(uow, ctx, org_ref))
    token = issue_token()
    directory.token_hash, directory.token_hint = token.token_hash, token.hint
    directory.token_rotated_at = directory.updated_at = ctx.now
    uow.directories.save(directory)
    uow.audit.add(_event(ctx, directory, "directory.token_rotated", {"token": "rotated"}))
    uow.commit()
    return WithToken(directory, token.token)


def delete_directory(uow: UnitOfWork, ctx: Context, org_ref: str, directory_id: str) -> int:
    """Delete the directory and deprovision its users; how many users were deprovisioned."""
    directory = _directory(uow, ctx, org_ref, directory_id)
    require_sso_writer(ctx.principal, organization_for(uow, ctx, org_ref))
    user_ids = uow.directory_users.ids(directory.id)
    for user_id in user_ids:
        end_user_sessions(uow, user_id, ctx.now, reason="directory_deleted", actor=ctx.principal.actor,
                          request_id=ctx.request_id)
        uow.grants.forget_user(user_id)
        uow.directory_users.delete(user_id)
    uow.directories.delete(directory.id)
    uow.audit.add(_event(ctx, directory, "directory.deleted", {"name": {"from": directory.name, "to": None},
                                                               "users_deprovisioned": len(user_ids)}))
    uow.commit()
    return len(user_ids)


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 9:
        raise InvalidInput("cursor: must be a cursor this API returned", field="cursor")
    return int(cursor)


def list_directory_users(uow: UnitOfWork, ctx: Context, org_ref: str, directory_id: str, *,
                         limit: int, cursor: str | None) -> tuple[Slice[DirectoryUser], str | None]:
    directory = _directory(uow, ctx, org_ref, directory_id)
    offset = _offset(cursor)
    found = uow.directory_users.list_slice(directory.id, None, offset=offset, limit=limit)
    after = offset + len(found.items)
    return found, (str(after) if after < found.total else None)


def list_directory_groups(uow: UnitOfWork, ctx: Context, org_ref: str, directory_id: str, *,
                          limit: int, cursor: str | None) -> tuple[Slice[DirectoryGroup], str | None]:
    directory = _directory(uow, ctx, org_ref, directory_id)
    offset = _offset(cursor)
    found = uow.directory_groups.list_slice(directory.id, None, offset=offset, limit=limit)
    after = offset + len(found.items)
    return found, (str(after) if after < found.total else None)
