"""Claiming email domains and proving ownership through a DNS TXT record.

An organization claims a domain and publishes ``_keyhall-challenge.<domain>`` TXT
``keyhall-verification=<token>``. A check (on demand, ``POST .../domains/{id}/verify``, or by the
periodic job) reads that name and judges:

- **proof found** → ``verified``; ``verified_at`` is the last time the proof was seen (refreshed
  by every successful check), ``last_error`` is cleared. If another organization has already
  verified the domain, the claim becomes ``failed`` instead and the on-demand check answers 409:
  a verified domain belongs to one organization.
- **definitive "not there"** (NXDOMAIN, no TXT record, or only other values) → a pending or
  failed domain is ``failed`` with the reason. A verified domain is re-checked, as the field does
  (GitLab Pages re-verifies custom domains and disables them after a 7-day grace period):
  it stays verified, with the reason and the deadline in ``last_error``, until
  ``verified_at + VERIFIED_GRACE``; a check after that un-verifies it (``failed``), and
  home-realm discovery stops routing it. Restoring the record within the grace period heals it.
- **DNS did not answer** (timeout, SERVFAIL, REFUSED, server down) → says nothing about
  ownership. A verified domain stays verified (a DNS hiccup must not take sign-in down), with the
  reason in ``last_error``; a pending one becomes ``failed`` with the reason.

Every check records ``last_checked_at``. DNS is asked with no database transaction open, so a
slow or dead DNS server never holds a lock that sign-ins need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from keyhall.core import audit, events
from keyhall.core.access import require_sso_writer
from keyhall.core.connection_service import Context, organization_for
from keyhall.core.connection_settings import normalize_domain
from keyhall.core.domains import PUBLIC_EMAIL_DOMAINS, Domain, new_domain
from keyhall.core.ports import Page, TxtLookup, UnitOfWork
from keyhall.core.vocabulary import DomainStatus
from keyhall.errors import Conflict, InvalidInput, NotFound

VERIFIED_GRACE = timedelta(days=7)
"""How long a verified domain keeps routing after its proof was last seen in DNS."""
RECHECK_VERIFIED = timedelta(hours=24)
RECHECK_NEW_CLAIM = timedelta(minutes=5)
NEW_CLAIM_PERIOD = timedelta(days=7)
RECHECK_OLD_CLAIM = timedelta(hours=24)
MAX_ERROR_LENGTH = 512  # the stored column's size


@dataclass(frozen=True)
class Evidence:
    """What DNS said at the challenge name: the values, or why it did not answer."""

    values: tuple[str, ...] = ()
    failure: str | None = None


@dataclass(frozen=True)
class Verdict:
    status: DomainStatus
    last_error: str | None
    verified_at: datetime | None
    conflict: bool = False  # proven, but another organization has verified the domain
    dns_failed: bool = False  # DNS did not answer: nothing was learnt about ownership


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
    return _domain(uow, org.id, domain_id)


def list_domains(uow: UnitOfWork, ctx: Context, org_ref: str, *, limit: int, cursor: str | None) -> Page[Domain]:
    org = organization_for(uow, ctx, org_ref)
    return uow.domains.list_page(org.id, limit=limit, cursor=cursor)


def delete_domain(uow: UnitOfWork, ctx: Context, org_ref: str, domain_id: str) -> None:
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    domain = _domain(uow, org.id, domain_id)
    uow.domains.delete(domain.id)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="domain.deleted", target_type="domain",
        target_id=domain.id, request_id=ctx.request_id, now=ctx.now,
        changes={"name": {"from": domain.name, "to": None}},
    ))
    if domain.status is DomainStatus.VERIFIED:  # it no longer routes sign-ins
        events.emit(uow, "domain.unverified", organization_id=org.id, now=ctx.now,
                    data={**events.domain_data(domain), "status": "deleted"})
    uow.commit()


def _domain(uow: UnitOfWork, organization_id: str, domain_id: str) -> Domain:
    domain = uow.domains.get(organization_id, domain_id)
    if domain is None:
        raise NotFound("domain not found")
    return domain


# --- checking ---------------------------------------------------------------------------------


def accepted_values(uow: UnitOfWork, domain: Domain) -> frozenset[str]:
    """The TXT values that prove ``domain`` belongs to its organization.

    Always ``keyhall-verification=<token>``. Besides it, the Raidiam dialect's ``TextRecord``
    is the same mechanism: the ``text_record`` of an active connection of the same organization
    that routes this domain, published verbatim at the same name (``_keyhall-challenge.<domain>``),
    proves ownership too. Unlike the token, that value is chosen by the owner and is readable by
    anyone in public DNS, so while the domain is not yet verified a value that an active
    connection of another organization routing the same domain also carries proves nothing:
    copying a published TextRecord must not let a second organization take the domain.
    """
    accepted = {domain.record_value}
    routing = uow.connections.by_domain(domain.name)
    ours = {c.text_record for c in routing if c.organization_id == domain.organization_id and c.text_record}
    if domain.status is not DomainStatus.VERIFIED:
        ours -= {c.text_record for c in routing if c.organization_id != domain.organization_id}
    return frozenset(accepted | ours)


def look_up(lookup: TxtLookup, name: str) -> Evidence:
    try:
        return Evidence(values=tuple(lookup(name)))
    except LookupError as exc:
        return Evidence(failure=str(exc) or "DNS look-up failed")


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def judge(
    domain: Domain, evidence: Evidence, accepted: frozenset[str], now: datetime, *,
    verified_elsewhere: bool, grace: timedelta = VERIFIED_GRACE,
) -> Verdict:
    """The domain's state after a check (pure; see the module docstring for the rules)."""
    was_verified = domain.status is DomainStatus.VERIFIED
    if evidence.failure is not None:
        if was_verified:
            return Verdict(DomainStatus.VERIFIED, _clip(f"DNS check failed, the domain stays verified: "
                                                        f"{evidence.failure}"), domain.verified_at, dns_failed=True)
        return Verdict(DomainStatus.FAILED, _clip(evidence.failure), domain.verified_at, dns_failed=True)
    if any(value.strip() in accepted for value in evidence.values):
        if verified_elsewhere and not was_verified:
            return Verdict(DomainStatus.FAILED, f"{domain.name} is verified by another organization",
                           domain.verified_at, conflict=True)
        return Verdict(DomainStatus.VERIFIED, None, now)
    if evidence.values:
        missing = f"the TXT records at {domain.record_name} hold other values than {domain.record_value!r}"
    else:
        missing = f"no TXT record at {domain.record_name}"
    if was_verified:
        deadline = (domain.verified_at or now) + grace
        if now < deadline:
            return Verdict(DomainStatus.VERIFIED, _clip(f"{missing}; the domain stays verified until "
                                                        f"{_stamp(deadline)} unless the record is restored"),
                           domain.verified_at)
        return Verdict(DomainStatus.FAILED, _clip(f"{missing}; the proof was last seen {_stamp(deadline - grace)}, "
                                                  "more than the grace period ago: the domain is no longer verified"),
                       domain.verified_at)
    return Verdict(DomainStatus.FAILED, _clip(missing), domain.verified_at)


def record_check(
    uow: UnitOfWork, organization_id: str, domain_id: str, evidence: Evidence, accepted: frozenset[str], *,
    actor: str, request_id: str | None, now: datetime, audit_unchanged: bool = True,
) -> tuple[Domain, Verdict]:
    """Apply a check's evidence to the stored domain (read again: it may have changed while DNS
    answered), save and audit it. The caller commits."""
    domain = _domain(uow, organization_id, domain_id)
    elsewhere = uow.domains.verified_elsewhere(organization_id, domain.name)
    verdict = judge(domain, evidence, accepted, now, verified_elsewhere=elsewhere)
    before = {"status": str(domain.status), "last_error": domain.last_error}
    was_verified = domain.status is DomainStatus.VERIFIED
    domain.status, domain.last_error, domain.verified_at = verdict.status, verdict.last_error, verdict.verified_at
    domain.last_checked_at = now
    uow.domains.save(domain)
    changes = audit.diff(before, {"status": str(domain.status), "last_error": domain.last_error})
    if changes or audit_unchanged:
        uow.audit.add(audit.event(
            organization_id=organization_id, actor=actor, action="domain.checked", target_type="domain",
            target_id=domain.id, request_id=request_id, now=now, changes=changes,
        ))
    if was_verified != (domain.status is DomainStatus.VERIFIED):
        events.emit(uow, "domain.verified" if not was_verified else "domain.unverified",
                    organization_id=organization_id, data=events.domain_data(domain), now=now)
    return domain, verdict


def verify_domain(uow: UnitOfWork, ctx: Context, org_ref: str, domain_id: str, lookup: TxtLookup) -> Domain:
    """Check ``_keyhall-challenge.<domain>`` now; 409 (after recording the failed check) when
    another organization has verified the domain."""
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    domain = _domain(uow, org.id, domain_id)
    accepted = accepted_values(uow, domain)
    uow.rollback()  # no transaction (and no SQLite write lock) is held while DNS answers
    evidence = look_up(lookup, domain.record_name)
    domain, verdict = record_check(uow, org.id, domain.id, evidence, accepted, actor=ctx.principal.actor,
                                   request_id=ctx.request_id, now=ctx.now)
    uow.commit()
    if verdict.conflict:
        raise Conflict(f"domain: {domain.name} is verified by another organization", field="domain")
    return domain


def recheck_domain(
    uow: UnitOfWork, organization_id: str, domain_id: str, lookup: TxtLookup, *, actor: str, now: datetime,
) -> Verdict | None:
    """One periodic check (the job's unit of work); audited when something changed. None when the
    domain is gone."""
    domain = uow.domains.get(organization_id, domain_id)
    if domain is None:
        return None
    accepted = accepted_values(uow, domain)
    uow.rollback()
    evidence = look_up(lookup, domain.record_name)
    try:
        _, verdict = record_check(uow, organization_id, domain_id, evidence, accepted, actor=actor,
                                  request_id=None, now=now, audit_unchanged=False)
    except NotFound:
        return None
    uow.commit()
    return verdict


def is_due(domain: Domain, now: datetime) -> bool:
    """Whether the periodic job should check ``domain`` now: never-checked ones at once; new
    claims (first week) every few minutes; verified domains and older claims daily."""
    if domain.last_checked_at is None:
        return True
    age = now - domain.last_checked_at
    if domain.status is DomainStatus.VERIFIED:
        return age >= RECHECK_VERIFIED
    if now - domain.created_at < NEW_CLAIM_PERIOD:
        return age >= RECHECK_NEW_CLAIM
    return age >= RECHECK_OLD_CLAIM


def due_domains(uow: UnitOfWork, now: datetime, *, limit: int) -> list[Domain]:
    """Up to ``limit`` domains due for a check, the longest unchecked first."""
    due: list[Domain] = []
    org_cursor: str | None = None
    while True:
        orgs = uow.organizations.list_page(limit=200, cursor=org_cursor)
        for org in orgs.items:
            cursor: str | None = None
            while True:
                page = uow.domains.list_page(org.id, limit=200, cursor=cursor)
                due += [d for d in page.items if is_due(d, now)]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        if orgs.next_cursor is None:
            break
        org_cursor = orgs.next_cursor
    oldest = datetime.min.replace(tzinfo=UTC)
    due.sort(key=lambda d: (d.last_checked_at or oldest, d.created_at))
    return due[:limit]
