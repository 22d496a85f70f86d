"""Creating, changing and removing SSO connections: the rules that need storage or the IdP.

Each function runs in one unit of work: the IdP is inspected first, then every write and its
audit event land in one commit, or nothing does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from keyhall.core import audit, events
from keyhall.core.access import Principal, require_member, require_sso_writer
from keyhall.core.connections import Connection, ConnectionInput, Outcome, apply_input
from keyhall.core.domains import new_domain
from keyhall.core.organizations import Organization, is_uuid
from keyhall.core.ports import ConnectionFilter, IdPInspector, Page, Slice, UnitOfWork
from keyhall.core.presets import preset_for
from keyhall.core.vocabulary import ConnectionStatus, GroupProvisioning, Protocol, Provider, UserProvisioning
from keyhall.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from keyhall.security.sp_keys import generate_sp_keypair

MAX_RETRIES = 3


@dataclass(frozen=True)
class Context:
    """Who acts, under which request id, at what time."""

    principal: Principal
    request_id: str | None
    now: datetime


def organization_for(uow: UnitOfWork, ctx: Context, org_ref: str) -> Organization:
    return require_member(ctx.principal, uow.organizations.get(org_ref))


def get_connection(uow: UnitOfWork, ctx: Context, org_ref: str, connection_id: str) -> Connection:
    org = organization_for(uow, ctx, org_ref)
    connection = uow.connections.get(org.id, connection_id)
    if connection is None:
        raise NotFound("connection not found", details={"id": connection_id})
    return connection


def read_connection(uow: UnitOfWork, ctx: Context, org_ref: str, connection_id: str) -> Connection:
    """:func:`get_connection` for a caller that only renders the connection: what it gets may be shared
    with other requests (no copy of the cached entity is made), so it must not be changed.

    When ``org_ref`` is an organization id the principal may see (its own, or any for an instance
    key), the organization is not read first: a connection found under that id proves the
    organization exists (a foreign key), and only a miss reads it, so that a missing or hidden
    organization still answers as :func:`get_connection` does."""
    org_id = org_ref.lower() if is_uuid(org_ref) else None
    if org_id is None or not (ctx.principal.instance_admin or ctx.principal.organization_id == org_id):
        org_id = organization_for(uow, ctx, org_ref).id
    connection = uow.connections.get(org_id, connection_id, shared=True)
    if connection is None:
        organization_for(uow, ctx, org_ref)  # the organization's own NotFound comes first
        raise NotFound("connection not found", details={"id": connection_id})
    return connection


def list_connections(
    uow: UnitOfWork, ctx: Context, org_ref: str, *, limit: int, cursor: str | None, protocol: str | None = None,
    where: ConnectionFilter | None = None,
) -> Page[Connection]:
    """A page by cursor of the organization's connections that match ``where`` (and ``protocol``)."""
    org = organization_for(uow, ctx, org_ref)
    where = where or ConnectionFilter()
    if protocol:
        where = replace(where, protocols=(protocol,))
    return uow.connections.list_page(org.id, limit=limit, cursor=cursor, where=where)


def find_connections(
    uow: UnitOfWork, ctx: Context, org_ref: str, where: ConnectionFilter, *, offset: int = 0,
    limit: int | None = None,
) -> Slice[Connection]:
    """A window by position of the organization's connections that match ``where``, and their count:
    for APIs that page by number (``page``/``offset``) and report a total."""
    org = organization_for(uow, ctx, org_ref)
    return uow.connections.list_slice(org.id, where, offset=offset, limit=limit)


def replacement(
    data: dict[str, Any], provider: Provider, protocol: Protocol,
    *, group_provisioning: GroupProvisioning = GroupProvisioning.SYNC,
) -> dict[str, Any]:
    """``data`` (a connection input) as a full replacement of the sign-in policy: each policy field it
    leaves out takes a new connection's value — automatic user provisioning, no group mappings, the
    provider preset's attribute mappings (those sent are laid over them) — and group provisioning
    the default the calling API documents (``group_provisioning``; the core's own is ``sync``)."""
    preset = dict(preset_for(provider).attribute_mappings.get(protocol, {}))
    return {"user_provisioning": UserProvisioning.AUTO, "group_provisioning": group_provisioning,
            "group_mappings": [], **data, "attribute_mappings": {**preset, **(data.get("attribute_mappings") or {})}}


def _inspect(outcome: Outcome, inspector: IdPInspector, now: datetime) -> None:
    conn = outcome.connection
    if not outcome.needs_inspection:
        return
    if conn.protocol is Protocol.OIDC:
        found = inspector.inspect_oidc(conn.settings)
        if not conn.settings.get("issuer") and found.get("issuer"):
            conn.settings["issuer"] = found["issuer"]
    elif conn.protocol is Protocol.SAML:
        found = inspector.inspect_saml(conn.settings, now)
    else:
        found = inspector.inspect_ldap(conn.settings, conn.secrets)
    conn.discovered = {**found, "fetched_at": now.isoformat().replace("+00:00", "Z")}


def _check_claims(uow: UnitOfWork, conn: Connection, exclude_id: str | None,
                  stored: Connection | None = None) -> None:
    """Name and domains free in the organization, domains not verified by another one. What ``stored``
    (the connection as it is) already holds needs no look-up: the organization's name and domain
    uniqueness constraints keep anyone else from holding it too."""
    same_name = stored is not None and stored.name == conn.name
    if not same_name and uow.connections.name_taken(conn.organization_id, conn.name, exclude_id=exclude_id):
        raise Conflict(f"name: a connection named {conn.name!r} already exists in this organization",
                       field="name")
    same_domains = stored is not None and set(stored.domains) >= set(conn.domains)
    taken = [] if same_domains else uow.connections.domains_claimed(conn.organization_id, conn.domains,
                                                                      exclude_id=exclude_id)
    if taken:
        raise Conflict(f"domains: {', '.join(taken)} already routed to another connection of this organization",
                       field="domains", details={"domains": taken})
    for name in conn.domains:
        if uow.domains.verified_elsewhere(conn.organization_id, name):
            raise Conflict(f"domains: {name} is verified by another organization", field="domains")


def _claim_domains(uow: UnitOfWork, conn: Connection, now: datetime) -> None:
    """A domain a connection routes is also claimed by its organization (pending DNS proof)."""
    for name in conn.domains:
        if uow.domains.find(conn.organization_id, name) is None:
            uow.domains.add(new_domain(conn.organization_id, name, now))


def create_connection(
    uow: UnitOfWork, ctx: Context, org_ref: str, data: ConnectionInput, inspector: IdPInspector,
    *, make_default: bool = False, new_id: str | None = None,
) -> Connection:
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    if new_id is not None and uow.connections.get_any(new_id) is not None:
        raise Conflict("this connection was already created; open it from the list", details={"id": new_id})
    outcome = apply_input(None, data, organization_id=org.id, now=ctx.now, new_id=new_id)
    conn = outcome.connection
    if conn.protocol is Protocol.SAML and "sp_private_key" not in conn.secrets:
        # Each SAML connection gets its own SP key: it signs AuthnRequests and decrypts assertions.
        cert, key = generate_sp_keypair(f"keyhall-sp-{conn.id}", now=ctx.now)
        conn.settings["sp_certificate"], conn.secrets["sp_private_key"] = cert, key
    _check_claims(uow, conn, exclude_id=None)
    _inspect(outcome, inspector, ctx.now)
    uow.connections.add(conn)
    if make_default:
        org.default_connection_id, org.updated_at = conn.id, ctx.now
        uow.organizations.save(org)
    _claim_domains(uow, conn, ctx.now)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="connection.created",
        target_type="connection", target_id=conn.id, request_id=ctx.request_id, now=ctx.now,
        changes=audit.diff({}, conn.snapshot()),
    ))
    events.emit(uow, "connection.created", organization_id=org.id, data=events.connection_data(conn), now=ctx.now)
    uow.commit()
    return conn


def update_connection(
    uow: UnitOfWork,
    ctx: Context,
    org_ref: str,
    connection_id: str,
    data: ConnectionInput,
    inspector: IdPInspector,
    *,
    expected_version: int | None = None,
    replace_all: bool = False,
    listing: Literal["keep", "publish", "withdraw"] = "keep",
) -> Connection:
    """Apply a partial (or, with ``replace_all``, full) update with optimistic locking.

    ``listing`` "publish" gives the connection a published listing with a new id (409 when it has
    one); "withdraw" removes it. With ``expected_version`` (an ``If-Match``) a stale version is 412.
    Without it, a concurrent writer makes us re-read and re-apply the same change, so no update is silently lost.
    """
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    for _attempt in range(MAX_RETRIES):
        # Without If-Match the change applies to whatever is current: lock the row so concurrent
        # writers queue instead of failing. With If-Match a stale version is the caller's to resolve.
        existing = uow.connections.get(org.id, connection_id, for_update=expected_version is None)
        if existing is None:
            raise NotFound("connection not found", details={"id": connection_id})
        if expected_version is not None and existing.version != expected_version:
            raise PreconditionFailed(
                f"the connection changed since you read it (version {existing.version}, If-Match {expected_version})"
            )
        outcome = apply_input(existing, data, organization_id=org.id, now=ctx.now, replace_all=replace_all)
        conn = outcome.connection
        if listing == "publish":
            if existing.listing_id is not None:
                raise Conflict("this connection's listing is already published",
                               details={"listing_id": existing.listing_id})
            conn.listing_id = str(uuid.uuid4())
        elif listing == "withdraw":
            conn.listing_id = None
        _check_claims(uow, conn, exclude_id=conn.id, stored=existing)
        _inspect(outcome, inspector, ctx.now)
        conn.version = existing.version + 1
        if not uow.connections.save(conn, expected_version=existing.version, stored_domains=existing.domains):
            uow.rollback()
            if expected_version is not None:
                raise PreconditionFailed("the connection changed since you read it")
            continue
        _claim_domains(uow, conn, ctx.now)
        changes = audit.diff(existing.snapshot(), conn.snapshot())
        deactivated = existing.status is ConnectionStatus.ACTIVE and conn.status is not ConnectionStatus.ACTIVE
        if deactivated:
            # Switched off ends what was issued through it for good: switching it back on later
            # does not bring those sign-ins back.
            changes["sessions_revoked"] = uow.grants.revoke_connection(conn.id, ctx.now)
        for name, value in conn.secrets.items():
            if existing.secrets.get(name) != value:
                changes[f"{conn.protocol}.{name}"] = {"from": "set" if name in existing.secrets else None,
                                                      "to": "changed"}
        uow.audit.add(audit.event(
            organization_id=org.id, actor=ctx.principal.actor, action="connection.updated",
            target_type="connection", target_id=conn.id, request_id=ctx.request_id, now=ctx.now,
            changes=changes,
        ))
        events.emit(uow, "connection.updated", organization_id=org.id, now=ctx.now,
                    data=events.connection_data(conn, changed=[k for k in changes if k != "sessions_revoked"]))
        if deactivated:
            events.emit(uow, "connection.deactivated", organization_id=org.id, data=events.connection_data(conn),
                        now=ctx.now)
        uow.commit()
        return conn
    raise Conflict("the connection is being changed by others right now; try again")


def delete_connection(uow: UnitOfWork, ctx: Context, org_ref: str, connection_id: str,
                      *, expected_version: int | None = None) -> Connection:
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    existing = uow.connections.get(org.id, connection_id)
    if existing is None:
        raise NotFound("connection not found", details={"id": connection_id})
    if expected_version is not None and existing.version != expected_version:
        raise PreconditionFailed("the connection changed since you read it")
    if existing.disable_email_password and existing.status.value == "active":
        raise Conflict(
            "this connection is the way members sign in while disable_email_password is true; "
            "set disable_email_password to false before deleting it",
            details={"rule": "delete_while_password_disabled"},
        )
    uow.connections.delete(existing.id)
    if org.default_connection_id == existing.id:
        org.default_connection_id = None
        uow.organizations.save(org)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="connection.deleted",
        target_type="connection", target_id=existing.id, request_id=ctx.request_id, now=ctx.now,
        changes=audit.diff(existing.snapshot(), {}),
    ))
    events.emit(uow, "connection.deleted", organization_id=org.id, data=events.connection_data(existing),
                now=ctx.now)
    uow.commit()
    return existing


def get_default_connection(uow: UnitOfWork, ctx: Context, org_ref: str) -> Connection:
    """The organization's default connection: used when only the organization picks the route."""
    org = organization_for(uow, ctx, org_ref)
    conn = uow.connections.get(org.id, org.default_connection_id) if org.default_connection_id else None
    if conn is None:
        raise NotFound("this organization has no default SSO connection")
    return conn


def upsert_default_connection(
    uow: UnitOfWork, ctx: Context, org_ref: str, data: ConnectionInput, inspector: IdPInspector
) -> tuple[Connection, bool]:
    """Create the default connection, or update it in place when it exists; True when created."""
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    existing = uow.connections.get(org.id, org.default_connection_id) if org.default_connection_id else None
    if existing is not None:
        data = data.without("protocol")
        return update_connection(uow, ctx, org.id, existing.id, data, inspector), False
    return create_connection(uow, ctx, org.id, data, inspector, make_default=True), True


def mark_verified(uow: UnitOfWork, connection_id: str, now: datetime, request_id: str | None) -> None:
    """The first successful sign-in through a connection proves it works: ``is_verified`` turns true."""
    for _attempt in range(MAX_RETRIES):
        conn = uow.connections.get_any(connection_id)
        if conn is None or conn.is_verified:
            return
        version = conn.version
        conn.is_verified, conn.verified_at, conn.version = True, now, version + 1
        if uow.connections.save(conn, expected_version=version):
            uow.audit.add(audit.event(
                organization_id=conn.organization_id, actor="system", action="connection.verified",
                target_type="connection", target_id=conn.id, request_id=request_id, now=now,
                changes={"is_verified": {"from": False, "to": True}},
            ))
            events.emit(uow, "connection.verified", organization_id=conn.organization_id,
                        data=events.connection_data(conn), now=now)
            uow.commit()
            return
        uow.rollback()


def parse_if_match(value: str | None) -> int | None:
    """``If-Match: "3"`` (or ``W/"3"``) → 3. ``*`` means any version."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidInput("If-Match: must be an ETag this API returned, like \"3\"", field="If-Match")
    return int(text)


def etag(conn: Connection) -> str:
    return f'"{conn.version}"'


def public_settings(conn: Connection) -> dict[str, Any]:
    return {**conn.settings, **conn.secrets_set()}
