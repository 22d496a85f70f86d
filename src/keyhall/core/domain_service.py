"""Claiming email domains and proving ownership through a DNS TXT record."""

from __future__ import annotations

from typing import Protocol

from keyhall.core import audit
from keyhall.core.access import require_sso_writer
from keyhall.core.connection_service import Context, organization_for
from keyhall.core.connection_settings import normalize_domain
from keyhall.core.domains import PUBLIC_EMAIL_DOMAINS, Domain, new_domain
from keyhall.core.ports import Page, UnitOfWork
from keyhall.core.vocabulary import DomainStatus
from keyhall.errors import Conflict, InvalidInput, NotFound


class TxtLookup(Protocol):
    def __call__(self, name: str) -> list[str]:
        """TXT strings published at ``name``; raises ``LookupError`` with a reason when DNS fails."""
        ...


def parse_domain_name(value: str) -> str:
    try:
        name = normalize_domain(value)
    except ValueError as exc:
        raise InvalidInput(f"domain: {exc}", field="domain") from None
    if name in PUBLIC_EMAIL_DOMAINS:
        raise InvalidInput(f"domain: {name} is a public email domain and cannot be claimed", field="domain")
    return name


def claim_domain(uow: UnitOfWork, ctx: Context, org_ref: str, value: str) -> Domain:
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    name = parse_domain_name(value)
    if uow.domains.find(org.id, name) is not None:
        raise Conflict(f"domain: {name} is already claimed by this organization", field="domain")
    if uow.domains.verified_elsewhere(org.id, name):
        raise Conflict(f"domain: {name} is verified by another organization", field="domain")
    domain = new_domain(org.id, name, ctx.now)
    uow.domains.add(domain)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="domain.claimed", target_type="domain",
        target_id=domain.id, request_id=ctx.request_id, now=ctx.now, changes={"name": {"from": None, "to": name}},
    ))
    uow.commit()
    return domain


def get_domain(uow: UnitOfWork, ctx: Context, org_ref: str, domain_id: str) -> Domain:
    org = organization_for(uow, ctx, org_ref)
    domain = uow.domains.get(org.id, domain_id)
    if domain is None:
        raise NotFound("domain not found")
    return domain


def list_domains(uow: UnitOfWork, ctx: Context, org_ref: str, *, limit: int, cursor: str | None) -> Page[Domain]:
    org = organization_for(uow, ctx, org_ref)
    return uow.domains.list_page(org.id, limit=limit, cursor=cursor)


def delete_domain(uow: UnitOfWork, ctx: Context, org_ref: str, domain_id: str) -> None:
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    domain = uow.domains.get(org.id, domain_id)
    if domain is None:
        raise NotFound("domain not found")
    uow.domains.delete(domain.id)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="domain.deleted", target_type="domain",
        target_id=domain.id, request_id=ctx.request_id, now=ctx.now,
        changes={"name": {"from": domain.name, "to": None}},
    ))
    uow.commit()


def verify_domain(uow: UnitOfWork, ctx: Context, org_ref: str, domain_id: str, lookup: TxtLookup) -> Domain:
    """Look for ``_keyhall-challenge.<domain>`` = ``keyhall-verification=<token>`` now."""
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    domain = uow.domains.get(org.id, domain_id)
    if domain is None:
        raise NotFound("domain not found")
    before = domain.status
    try:
        values = lookup(domain.record_name)
    except LookupError as exc:
        domain.last_error = str(exc)
        values = None
    if values is not None:
        if domain.record_value in values:
            if uow.domains.verified_elsewhere(org.id, domain.name):
                raise Conflict(f"domain: {domain.name} is verified by another organization", field="domain")
            domain.status, domain.last_error = DomainStatus.VERIFIED, None
            domain.verified_at = domain.verified_at or ctx.now
        else:
            domain.last_error = (
                f"TXT record {domain.record_name} does not hold {domain.record_value!r}"
                if not values else f"TXT record {domain.record_name} holds other values"
            )
    if domain.status is not DomainStatus.VERIFIED:
        domain.status = DomainStatus.FAILED
    domain.last_checked_at = ctx.now
    uow.domains.save(domain)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="domain.checked", target_type="domain",
        target_id=domain.id, request_id=ctx.request_id, now=ctx.now,
        changes={"status": {"from": str(before), "to": str(domain.status)}} if before != domain.status else {},
    ))
    uow.commit()
    return domain
