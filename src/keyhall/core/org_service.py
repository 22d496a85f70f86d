"""Organizations and their API keys: creation, reading, role checks, authentication."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keyhall.core import audit, events
from keyhall.core.access import Principal, require_instance_admin, require_member, require_owner
from keyhall.core.api_keys import ApiKey
from keyhall.core.connection_service import Context
from keyhall.core.organizations import Organization, new_organization, validate_name
from keyhall.core.ports import Page, UnitOfWork
from keyhall.core.vocabulary import Role
from keyhall.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from keyhall.security.api_keys import IssuedKey, issue_key, secret_matches, split_token


def create_organization(uow: UnitOfWork, ctx: Context, name: str, slug: str | None = None) -> Organization:
    require_instance_admin(ctx.principal)
    org = new_organization(name, slug, ctx.now)
    if uow.organizations.slug_taken(org.slug):
        raise Conflict(f"slug: {org.slug!r} is already used by another organization", field="slug")
    uow.organizations.add(org)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="organization.created",
        target_type="organization", target_id=org.id, request_id=ctx.request_id, now=ctx.now,
        changes={"name": {"from": None, "to": org.name}, "slug": {"from": None, "to": org.slug}},
    ))
    uow.commit()
    return org


def get_organization(uow: UnitOfWork, ctx: Context, org_ref: str) -> Organization:
    return require_member(ctx.principal, uow.organizations.get(org_ref))


def list_organizations(uow: UnitOfWork, ctx: Context, *, limit: int, cursor: str | None) -> Page[Organization]:
    if not ctx.principal.instance_admin:
        org = uow.organizations.get(ctx.principal.organization_id or "")
        return Page(items=[org] if org else [], next_cursor=None)
    return uow.organizations.list_page(limit=limit, cursor=cursor)


@dataclass(frozen=True)
class OrganizationChanges:
    name: str | None = None
    admins_may_configure_sso: bool | None = None
    break_glass_email: str | None = None
    clear_break_glass: bool = False
    default_connection_id: str | None = None
    clear_default_connection: bool = False


def update_organization(uow: UnitOfWork, ctx: Context, org_ref: str, changes: OrganizationChanges) -> Organization:
    org = get_organization(uow, ctx, org_ref)
    require_owner(ctx.principal, org)
    before = {"name": org.name, "admins_may_configure_sso": org.admins_may_configure_sso,
              "break_glass_email": org.break_glass_email, "default_connection_id": org.default_connection_id}
    if changes.name is not None:
        org.name = validate_name(changes.name)
    if changes.admins_may_configure_sso is not None:
        org.admins_may_configure_sso = changes.admins_may_configure_sso
    if changes.break_glass_email is not None:
        org.break_glass_email = changes.break_glass_email.lower()
    if changes.clear_break_glass:
        org.break_glass_email = None
    if changes.default_connection_id is not None:
        if uow.connections.get(org.id, changes.default_connection_id) is None:
            raise InvalidInput("default_connection_id: no such connection in this organization",
                               field="default_connection_id")
        org.default_connection_id = changes.default_connection_id.lower()
    if changes.clear_default_connection:
        org.default_connection_id = None
    org.updated_at = ctx.now
    after = {"name": org.name, "admins_may_configure_sso": org.admins_may_configure_sso,
             "break_glass_email": org.break_glass_email, "default_connection_id": org.default_connection_id}
    uow.organizations.save(org)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="organization.updated",
        target_type="organization", target_id=org.id, request_id=ctx.request_id, now=ctx.now,
        changes=audit.diff(before, after),
    ))
    uow.commit()
    return org


def delete_organization(uow: UnitOfWork, ctx: Context, org_ref: str) -> None:
    require_instance_admin(ctx.principal)
    org = uow.organizations.get(org_ref)
    if org is None:
        raise NotFound("organization not found")
    uow.organizations.delete(org.id)
    uow.audit.add(audit.event(
        organization_id=None, actor=ctx.principal.actor, action="organization.deleted",
        target_type="organization", target_id=org.id, request_id=ctx.request_id, now=ctx.now,
        changes={"slug": {"from": org.slug, "to": None}},
    ))
    # One event for everything that goes with the organization (its connections, domains, users).
    events.emit(uow, "organization.deleted", organization_id=org.id, now=ctx.now,
                data={"id": org.id, "slug": org.slug, "name": org.name})
    uow.commit()


def create_key(
    uow: UnitOfWork, ctx: Context, org_ref: str | None, role: Role | None, name: str | None = None
) -> tuple[ApiKey, IssuedKey]:
    """A new key; the secret exists only in the returned ``IssuedKey`` and is never stored."""
    if org_ref is None:
        require_instance_admin(ctx.principal)
        org_id, role = None, None
    else:
        org = get_organization(uow, ctx, org_ref)
        require_owner(ctx.principal, org)
        if role is None:
            raise InvalidInput("role: is required (owner, admin or viewer)", field="role")
        org_id = org.id
    if name is not None and len(name) > 128:
        raise InvalidInput("name: must be at most 128 characters", field="name")
    issued = issue_key()
    key = ApiKey(id=issued.key_id, organization_id=org_id, role=role, secret_hash=issued.secret_hash,
                 name=name, created_at=ctx.now)
    uow.api_keys.add(key)
    uow.audit.add(audit.event(
        organization_id=org_id, actor=ctx.principal.actor, action="api_key.created",
        target_type="api_key", target_id=key.id, request_id=ctx.request_id, now=ctx.now,
        changes={"role": {"from": None, "to": str(role) if role else "instance_admin"}},
    ))
    uow.commit()
    return key, issued


def list_keys(uow: UnitOfWork, ctx: Context, org_ref: str, *, limit: int, cursor: str | None) -> Page[ApiKey]:
    org = get_organization(uow, ctx, org_ref)
    require_owner(ctx.principal, org)
    return uow.api_keys.list_page(org.id, limit=limit, cursor=cursor)


def list_audit_events(uow: UnitOfWork, ctx: Context, org_ref: str, *, limit: int, cursor: str | None,
                      action: str | None = None, target_id: str | None = None) -> Page[audit.AuditEvent]:
    """The organization's audit trail, newest last; any member may read it."""
    org = get_organization(uow, ctx, org_ref)
    return uow.audit.list_page(org.id, limit=limit, cursor=cursor, action=action, target_id=target_id)


def revoke_key(uow: UnitOfWork, ctx: Context, org_ref: str | None, key_id: str) -> ApiKey:
    """Revoke a key of organization ``org_ref`` (its owners may); with ``org_ref`` None, any key by
    its id, instance-admin keys included (instance admins only: the CLI's ``keyhall key revoke``)."""
    if org_ref is None:
        require_instance_admin(ctx.principal)
        key = uow.api_keys.get(key_id)
        if key is None:
            raise NotFound("API key not found")
    else:
        org = get_organization(uow, ctx, org_ref)
        require_owner(ctx.principal, org)
        key = uow.api_keys.get(key_id)
        if key is None or key.organization_id != org.id:
            raise NotFound("API key not found")
    if key.revoked_at is None:
        key.revoked_at = ctx.now
        uow.api_keys.save(key)
        uow.audit.add(audit.event(
            organization_id=key.organization_id, actor=ctx.principal.actor, action="api_key.revoked",
            target_type="api_key", target_id=key.id, request_id=ctx.request_id, now=ctx.now,
        ))
        uow.commit()
    return key


def authenticate(uow: UnitOfWork, token: str | None, now: datetime) -> Principal:
    """The principal behind a bearer token, or Unauthenticated (one message for every failure)."""
    parts = split_token(token or "")
    key = uow.api_keys.get(parts[0]) if parts else None
    if parts is None or key is None or not key.active or not secret_matches(parts[1], key.secret_hash):
        raise Unauthenticated("a valid API key is required (Authorization: Bearer kh_...)")
    return Principal(key_id=key.id, organization_id=key.organization_id, role=key.role,
                     instance_admin=key.instance_admin)


def authenticate_pair(uow: UnitOfWork, key_id: str, secret: str, now: datetime) -> Principal:
    """Key id and secret given apart (Luzmo's ``key``/``token`` envelope)."""
    return authenticate(uow, f"kh_{key_id}.{secret}", now)
