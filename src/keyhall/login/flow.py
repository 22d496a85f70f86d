"""The sign-in flow from the product's authorization request to its authorization code.

1. ``start``: a validated authorization request becomes an *authorize* transaction, bound to the
   browser by a cookie.
2. ``route``: the request's ``connection`` / ``organization`` / ``domain`` / ``login_hint`` (or
   the email typed on the login page) picks the organization's connection.
3. A protocol module (``login.oidc``, ...) takes the person to their IdP and back.
4. ``complete``: the provisioned user gets an authorization code for the product; the
   connection is marked verified on its first success; the sign-in is audited.

Failures raise ``LoginFailed`` with a typed reason; they are audited and shown as a plain page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyhall.api.observability import observe_login
from keyhall.core import audit
from keyhall.core.connection_service import mark_verified
from keyhall.core.connections import Connection
from keyhall.core.organizations import Organization
from keyhall.core.policy import active_connections, connections_for_domain, email_domain
from keyhall.core.transactions import LoginTransaction, new_transaction
from keyhall.core.users import User
from keyhall.core.vocabulary import ConnectionStatus
from keyhall.errors import KeyhallError
from keyhall.provider.authorize import AuthorizeRequest, add_query
from keyhall.provider.grants import issue_code
from keyhall.provider.model import ProviderUnitOfWork


class LoginFailed(KeyhallError):
    """A sign-in that cannot go on. ``reason`` is typed (audited); ``message`` is for the person."""

    code = "login_failed"

    def __init__(self, message: str, *, reason: str, status: int = 400, connection: Connection | None = None,
                 detail: str | None = None):
        super().__init__(message, details={"reason": reason})
        self.reason = reason
        self.status = status
        self.connection = connection
        self.detail = detail


@dataclass
class Route:
    """Where a sign-in goes next: one connection, a choice, the email form, or nowhere."""

    connections: list[Connection] = field(default_factory=list)
    organization: Organization | None = None
    ask_email: bool = False


def start(uow: ProviderUnitOfWork, request: AuthorizeRequest, now: datetime) -> LoginTransaction:
    tx = new_transaction("authorize", {"request": request.as_dict(), "csrf": secrets.token_urlsafe(24)}, now)
    uow.transactions.add(tx)
    return tx


def authorize_transaction(uow: ProviderUnitOfWork, tx_id: str | None, cookie: str | None,
                          now: datetime) -> LoginTransaction:
    """The browser's pending authorize transaction; it must match the browser's cookie."""
    if not tx_id or not cookie or not secrets.compare_digest(tx_id, cookie):
        raise LoginFailed("This sign-in was not started in this browser. Go back to your application and "
                          "start again.", reason="transaction_not_bound")
    tx = uow.transactions.get(tx_id)
    if tx is None or tx.kind != "authorize" or tx.consumed_at is not None:
        raise LoginFailed("This sign-in has already finished or never started. Go back to your application "
                          "and start again.", reason="transaction_unknown")
    if tx.expired(now):
        raise LoginFailed("This sign-in took too long and has expired. Go back to your application and start "
                          "again.", reason="transaction_expired")
    return tx


def route(uow: ProviderUnitOfWork, request: AuthorizeRequest, *, email: str | None,
          allow_unverified_domains: bool) -> Route:
    if request.connection:
        conn = uow.connections.get_any(request.connection)
        org = uow.organizations.get(request.organization) if request.organization else None
        if conn is None or (request.organization and (org is None or org.id != conn.organization_id)):
            raise LoginFailed("The sign-in method your application asked for does not exist.",
                              reason="unknown_connection", status=404)
        if conn.status is not ConnectionStatus.ACTIVE:
            raise LoginFailed("This sign-in method is switched off by your organization.",
                              reason="connection_inactive", status=403, connection=conn)
        return Route(connections=[conn])
    if request.organization:
        org = uow.organizations.get(request.organization)
        if org is None:
            raise LoginFailed("The organization your application asked for does not exist.",
                              reason="unknown_organization", status=404)
        conns = active_connections(uow, org)
        default = [c for c in conns if c.id == org.default_connection_id]
        if email:
            domain = email_domain(email)
            matching = [c for c in conns if domain and domain in c.domains]
            conns = matching or conns
        return Route(connections=default or conns, organization=org)
    domain = request.domain or (email_domain(email) if email else None)
    if email is not None and domain is None:
        raise LoginFailed("That does not look like an email address.", reason="invalid_email")
    if domain is None:
        return Route(ask_email=True)
    return Route(connections=connections_for_domain(uow, domain.lower(), allow_unverified=allow_unverified_domains))


def usable_connection(uow: ProviderUnitOfWork, request: AuthorizeRequest, conn: Connection | None) -> Connection:
    """The connection a sign-in may go through: it exists, is active, and is the one (or belongs to
    the organization) the product asked for, if it asked."""
    if conn is None or conn.status is not ConnectionStatus.ACTIVE:
        raise LoginFailed("This sign-in method is not available.", reason="connection_inactive", connection=conn,
                          status=404)
    if request.connection and request.connection != conn.id:
        raise LoginFailed("This sign-in method is not the one your application asked for.",
                          reason="connection_not_requested", connection=conn, status=403)
    if request.organization:
        org = uow.organizations.get(request.organization)
        if org is None or org.id != conn.organization_id:
            raise LoginFailed("This sign-in method does not belong to the organization your application asked "
                              "for.", reason="connection_not_in_organization", connection=conn, status=403)
    return conn


def audit_login(uow: ProviderUnitOfWork, *, ok: bool, reason: str, now: datetime, request_id: str | None,
                connection: Connection | None = None, organization_id: str | None = None,
                user: User | None = None, extra: dict[str, Any] | None = None) -> None:
    org_id = organization_id or (connection.organization_id if connection else None)
    changes: dict[str, Any] = {"outcome": "success" if ok else "failure", "reason": reason,
                               "connection_id": connection.id if connection else None,
                               "user_id": user.id if user else None, **(extra or {})}
    uow.audit.add(audit.event(
        organization_id=org_id, actor=f"user:{user.id}" if user else "anonymous",
        action="login.succeeded" if ok else "login.failed", target_type="connection" if connection else "login",
        target_id=connection.id if connection else None, request_id=request_id, now=now, changes=changes,
    ))
    observe_login(connection.id if connection else None, ok, reason)


def complete(uow: ProviderUnitOfWork, parent_id: str, user: User, *, connection: Connection | None,
             amr: list[str], issuer: str, now: datetime, request_id: str | None) -> str:
    """Finish: the authorization code goes back to the product's registered redirect URI."""
    parent = uow.transactions.consume(parent_id, "authorize", now)
    if parent is None:
        raise LoginFailed("This sign-in has already finished or expired. Go back to your application and start "
                          "again.", reason="transaction_expired", connection=connection)
    request = AuthorizeRequest.from_dict(parent.data["request"])
    code = issue_code(uow, request, user, connection_id=connection.id if connection else None, amr=amr, now=now)
    audit_login(uow, ok=True, reason="ok", now=now, request_id=request_id, connection=connection,
                organization_id=user.organization_id, user=user, extra={"client_id": request.client_id})
    uow.commit()
    if connection is not None and not connection.is_verified:
        mark_verified(uow, connection.id, now, request_id)
    return add_query(request.redirect_uri, {"code": code, "state": request.state, "iss": issuer})
