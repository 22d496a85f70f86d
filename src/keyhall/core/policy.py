"""Who may sign in how: home-realm discovery and the password-login policy."""

from __future__ import annotations

from keyhall.core.connections import Connection
from keyhall.core.organizations import Organization
from keyhall.core.ports import UnitOfWork
from keyhall.core.vocabulary import ConnectionStatus, DomainStatus


def email_domain(email: str) -> str | None:
    local, sep, domain = email.strip().rpartition("@")
    if not sep or not local or not domain or " " in email.strip():
        return None
    return domain.lower().rstrip(".")


def connections_for_domain(uow: UnitOfWork, domain: str, *, allow_unverified: bool) -> list[Connection]:
    """Home-realm discovery: the active connections routing this domain. Unless development mode
    allows it, a domain routes only once its organization has proved it owns it (DNS)."""
    found = []
    for conn in uow.connections.by_domain(domain):
        if not allow_unverified:
            claim = uow.domains.find(conn.organization_id, domain)
            if claim is None or claim.status is not DomainStatus.VERIFIED:
                continue
        found.append(conn)
    return found


def active_connections(uow: UnitOfWork, organization: Organization) -> list[Connection]:
    found: list[Connection] = []
    cursor = None
    while True:
        page = uow.connections.list_page(organization.id, limit=200, cursor=cursor)
        found += [c for c in page.items if c.status is ConnectionStatus.ACTIVE]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def password_login_allowed(uow: UnitOfWork, organization: Organization, email: str) -> bool:
    """False while an active connection of the organization has ``disable_email_password``,
    except for the owner's named break-glass account."""
    if organization.break_glass_email and email.lower() == organization.break_glass_email.lower():
        return True
    return not any(c.disable_email_password for c in active_connections(uow, organization))
