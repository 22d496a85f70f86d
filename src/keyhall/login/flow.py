"""The sign-in flow from the product's authorization request to its authorization code.

1. ``start``: a validated authorization request becomes an *authorize* transaction, bound to the
   browser by a cookie.
2. ``route``: the request's ``connection`` / ``organization`` / ``domain`` / ``login_hint`` (or
   the email typed on the login page) picks the organization's connection. ``pin`` stores what
   that routing allowed in the transaction: the connections the sign-in may go through, and for
   which organizations (if any) password sign-in is allowed. From then on ``pinned_connection``
   and ``password_organizations`` are the only ways to a connection or a password form, and
   ``complete`` checks the pin once more: a sign-in routed to one organization cannot be switched
   to another's connection by editing a URL.
3. A protocol module (``login.oidc``, ...) takes the person to their IdP and back.
4. ``complete``: the provisioned user gets an authorization code for the product; the
   connection is marked verified on its first success; the sign-in is audited. (A test sign-in,
   ``login.sign_in_test``, ends in ``login.sign_in_test_outcome`` instead: no code, a trace.)

Failures raise ``LoginFailed`` with a typed reason; they are audited, traced when a connection was
involved (``login.traces``), and shown as a plain page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyhall.core import audit
from keyhall.core.connection_service import mark_verified
from keyhall.core.connections import Connection
from keyhall.core.organizations import Organization
from keyhall.core.policy import active_connections, connections_for_domain, email_domain
from keyhall.core.ports import UnitOfWork
from keyhall.core.sign_in_traces import TraceKind, TraceNotes
from keyhall.core.tokens import SamlSubject
from keyhall.core.transactions import LoginTransaction
from keyhall.core.users import User
from keyhall.core.vocabulary import ConnectionStatus, Protocol
from keyhall.errors import KeyhallError
from keyhall.login import traces
from keyhall.login.records import AuthorizeRecord, Kind, SignInTestRecord, new_record_transaction, rewrite
from keyhall.metrics import observe_login
from keyhall.provider.authorize import AuthorizeRequest, add_query
from keyhall.provider.grants import issue_code
from keyhall.security.tokens import same_token


class LoginFailed(KeyhallError):
    """A sign-in that cannot go on. ``reason`` is typed (audited); ``message`` is for the person."""

    code = "login_failed"

    def __init__(self, message: str, *, reason: str, status: int = 400, connection: Connection | None = None,
                 detail: str | None = None, organization_id: str | None = None):
        super().__init__(message, details={"reason": reason})
        self.reason = reason
        self.status = status
        self.connection = connection
        self.detail = detail
        self.organization_id = organization_id  # whose audit log records it, when no connection says
        self.trace_notes: TraceNotes | None = None  # what the sign-in had checked when it failed


@dataclass
class Route:
    """Where a sign-in goes next: one connection, a choice, the email form, or nowhere.

    ``password_organizations``: the organizations whose local accounts may sign in with a
    password on this sign-in; None when the product set no bound (any organization), empty when
    password sign-in is not allowed at all (the product asked for one connection)."""

    connections: list[Connection] = field(default_factory=list)
    organization: Organization | None = None
    ask_email: bool = False
    password_organizations: list[str] | None = None


MAX_AGE_LIMIT = 10 * 365 * 24 * 3600  # seconds; beyond this a max_age bounds nothing


def parse_max_age(value: str | None) -> int | None:
    """The product's ``max_age`` (OIDC Core §3.1.2.1): seconds, a non-negative integer. Raises
    ValueError with a message naming the parameter."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise ValueError("max_age must be a non-negative integer (seconds)")
    return min(int(value), MAX_AGE_LIMIT)


def start(uow: UnitOfWork, request: AuthorizeRequest, now: datetime, *,
          max_age: int | None = None) -> LoginTransaction:
    """A new authorize transaction. Nothing is pinned yet (no connection, no password) until
    ``pin``; a request naming its connection (an IdP-initiated SAML sign-in) is pinned to it."""
    tx = new_record_transaction(AuthorizeRecord.new(request, max_age=max_age), now)
    uow.transactions.add(tx)
    return tx


def pin(uow: UnitOfWork, tx: LoginTransaction, found: Route) -> None:
    """Store what this routing allows; the caller commits. A later routing of the same sign-in
    (the person types another email) replaces it, but is bound by the same product request."""
    record = AuthorizeRecord.of(tx).pinned([c.id for c in found.connections], found.password_organizations)
    rewrite(uow.transactions, tx, record)


def _pinned(tx: LoginTransaction) -> tuple[list[str], list[str] | None]:
    if tx.kind == Kind.TEST_SIGN_IN:  # a test sign-in goes through its one connection, never a password
        return [SignInTestRecord.of(tx).connection_id], []
    record = AuthorizeRecord.of(tx)
    orgs = record.password_organizations
    return list(record.connections), (None if orgs is None else list(orgs))


def _not_routed(connection: Connection) -> LoginFailed:
    return LoginFailed("This sign-in method is not one your sign-in was sent to. Go back to your application and "
                       "start again.", reason="connection_not_routed", connection=connection, status=403)


def pinned_connection(uow: UnitOfWork, tx: LoginTransaction, connection_id: str, *,
                      protocol: Protocol | None = None) -> Connection:
    """The connection ``connection_id`` names, if this sign-in's routing allowed it and it is
    active (and speaks ``protocol``, when given). The stored connection is returned: its id is
    the canonical one, whatever the case of the URL's."""
    conn = uow.connections.get_any(connection_id)
    if conn is None or conn.status is not ConnectionStatus.ACTIVE or (protocol and conn.protocol is not protocol):
        raise LoginFailed("This sign-in method is not available.", reason="connection_inactive", connection=conn,
                          status=404)
    allowed, _orgs = _pinned(tx)
    if conn.id not in allowed:
        raise _not_routed(conn)
    if tx.kind == Kind.TEST_SIGN_IN:  # no product request to check it against
        return conn
    return usable_connection(uow, request_of(tx), conn)


def check_trip_pinned(uow: UnitOfWork, trip: LoginTransaction, connection: Connection, *,
                      parent: LoginTransaction | None = None) -> None:
    """An IdP's answer (OIDC callback, SAML ACS) for ``connection`` may go on only while the
    sign-in it belongs to is still routed there (the person may have been routed elsewhere since
    the trip began). Checked before anyone is provisioned; ``complete`` checks again, on the row it
    spends. ``parent``: the trip's sign-in as the caller already read it during this request (read
    here when not given, or when it is not the trip's)."""
    if parent is None or parent.id != trip.parent_id:
        parent = uow.transactions.get(trip.parent_id) if trip.parent_id else None
    allowed = _pinned(parent)[0] if parent is not None else []
    if connection.id not in allowed:
        raise _not_routed(connection)


def password_organizations(tx: LoginTransaction) -> list[str] | None:
    """The organizations whose local accounts may sign in with a password here (None: any).
    Raises LoginFailed when the routing offered no password sign-in at all."""
    _connections, orgs = _pinned(tx)
    if orgs is not None and not orgs:
        raise LoginFailed("Your application asked for a sign-in method other than a password. Go back to your "
                          "application and start again.", reason="password_not_routed", status=403)
    return orgs


def _check_pinned(parent: LoginTransaction, user: User, connection: Connection | None) -> None:
    connections, orgs = _pinned(parent)
    if connection is not None and connection.id not in connections:
        raise _not_routed(connection)
    if connection is None and orgs is not None and user.organization_id not in orgs:
        raise LoginFailed("Your application asked for another organization's sign-in. Go back to your "
                          "application and start again.", reason="password_not_routed", status=403)


def check_browser(parent_id: str | None, browser: str | None, *, connection: Connection | None = None) -> None:
    """The one same-browser check: ``browser`` (the login cookie, any text) must name the authorize
    transaction ``parent_id`` the step belongs to. Raises LoginFailed otherwise."""
    if parent_id is None or not same_token(parent_id, browser):
        raise LoginFailed("This sign-in was not started in this browser. Go back to your application and "
                          "start again.", reason="transaction_not_bound", connection=connection)


def authorize_transaction(uow: UnitOfWork, tx_id: str | None, cookie: str | None, now: datetime, *,
                          allow_test: bool = False) -> LoginTransaction:
    """The browser's pending authorize transaction; it must match the browser's cookie. With
    ``allow_test`` (the LDAP form), a test sign-in (``login.sign_in_test``) stands in for one."""
    check_browser(tx_id, cookie)
    tx = uow.transactions.get(str(tx_id))
    kinds = (Kind.AUTHORIZE, Kind.TEST_SIGN_IN) if allow_test else (Kind.AUTHORIZE,)
    if tx is None or tx.kind not in kinds or tx.consumed_at is not None:
        raise LoginFailed("This sign-in has already finished or never started. Go back to your application "
                          "and start again.", reason="transaction_unknown")
    if tx.expired(now):
        raise LoginFailed("This sign-in took too long and has expired. Go back to your application and start "
                          "again.", reason="transaction_expired")
    return tx


def form_transaction(uow: UnitOfWork, tx_id: str | None, cookie: str | None, csrf: str,
                     now: datetime, *, allow_test: bool = False) -> LoginTransaction:
    """``authorize_transaction`` for a posted form, whose CSRF token must be the transaction's."""
    tx = authorize_transaction(uow, tx_id or cookie, cookie, now, allow_test=allow_test)
    if not same_token(csrf, csrf_of(tx)):
        raise LoginFailed("This form has expired. Go back to your application and start again.",
                          reason="csrf_invalid", status=403)
    return tx


def csrf_of(tx: LoginTransaction) -> str:
    """The CSRF token of an authorize transaction's (or a test sign-in's) forms."""
    if tx.kind == Kind.TEST_SIGN_IN:
        return SignInTestRecord.of(tx).csrf
    return AuthorizeRecord.of(tx).csrf


def request_of(tx: LoginTransaction) -> AuthorizeRequest:
    """The product's authorization request an authorize transaction carries."""
    return AuthorizeRecord.of(tx).request


def route(uow: UnitOfWork, request: AuthorizeRequest, *, email: str | None,
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
        return Route(connections=[conn], password_organizations=[])
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
        return Route(connections=default or conns, organization=org, password_organizations=[org.id])
    domain = request.domain or (email_domain(email) if email else None)
    if email is not None and domain is None:
        raise LoginFailed("That does not look like an email address.", reason="invalid_email")
    if domain is None:
        return Route(ask_email=True)
    conns = connections_for_domain(uow, domain.lower(), allow_unverified=allow_unverified_domains)
    # A product that named the domain bounds password sign-in to the organizations routing it.
    orgs = sorted({c.organization_id for c in conns}) if request.domain else None
    return Route(connections=conns, password_organizations=orgs)


def usable_connection(uow: UnitOfWork, request: AuthorizeRequest, conn: Connection | None) -> Connection:
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


def audit_login(uow: UnitOfWork, *, ok: bool, reason: str, now: datetime, request_id: str | None,
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


def record_failure(uow: UnitOfWork, exc: LoginFailed, *, now: datetime, request_id: str | None) -> None:
    """Audit a failed sign-in on its own (whatever the request had written is rolled back), and keep
    its trace when it failed through a connection (support's "why did this login fail")."""
    uow.rollback()
    extra: dict[str, Any] = {"detail": exc.detail} if exc.detail else {}
    if exc.connection is not None:
        trace = traces.record(uow, exc.connection, kind=TraceKind.SIGN_IN, notes=exc.trace_notes, now=now,
                              failure=(exc.reason, exc.message, exc.detail))
        extra["trace_id"] = trace.id
    audit_login(uow, ok=False, reason=exc.reason, now=now, request_id=request_id, connection=exc.connection,
                organization_id=exc.organization_id, extra=extra or None)
    uow.commit()


@dataclass(frozen=True)
class Authentication:
    """How the person proved who they are, as the ID token tells the product: ``amr`` (RFC 8176
    values, the IdP's when it sent them), ``auth_time`` (the IdP's authentication time; None when
    Keyhall checked the credentials itself, just now) and ``acr`` (the IdP's, if any)."""

    amr: list[str]
    auth_time: datetime | None = None
    acr: str | None = None
    saml_subject: SamlSubject | None = None  # a SAML sign-in's NameID/SessionIndex, for single logout


def complete(uow: UnitOfWork, parent_id: str, user: User, *, connection: Connection | None,
             authn: Authentication, issuer: str, now: datetime, request_id: str | None) -> str:
    """Finish: the authorization code goes back to the product's registered redirect URI."""
    parent = uow.transactions.consume(parent_id, Kind.AUTHORIZE.value, now)
    if parent is None:
        raise LoginFailed("This sign-in has already finished or expired. Go back to your application and start "
                          "again.", reason="transaction_expired", connection=connection)
    _check_pinned(parent, user, connection)
    request = request_of(parent)
    code = issue_code(uow, request, user, connection_id=connection.id if connection else None, amr=authn.amr,
                      now=now, auth_time=authn.auth_time, acr=authn.acr, saml_subject=authn.saml_subject)
    audit_login(uow, ok=True, reason="ok", now=now, request_id=request_id, connection=connection,
                organization_id=user.organization_id, user=user, extra={"client_id": request.client_id})
    uow.commit()
    if connection is not None and not connection.is_verified:
        mark_verified(uow, connection.id, now, request_id)
    return add_query(request.redirect_uri, {"code": code, "state": request.state, "iss": issuer})
