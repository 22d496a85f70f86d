"""Test sign-in: a real sign-in through one connection, run by an administrator, that issues no code
to any application and ends on a page showing each step and check (``core.sign_in_traces``).

1. ``begin`` (the setup portal's "Test sign-in" button; ``begin_as`` for the API) stores a test
   sign-in (``records.SignInTestRecord``, which stands where a product's authorize transaction
   would) and a single-use ticket, and answers the URL to open: ``/test-sign-in/{ticket}``.
2. ``open_ticket``: the browser opens it; the ticket is spent, the browser is bound to the test by
   the login cookie (the test's id, as for any sign-in), and sent on to the IdP: OIDC redirect,
   SAML AuthnRequest, or Keyhall's LDAP form, as a real sign-in would be.
3. The IdP's answer comes back to the connection's usual callback, ACS or LDAP form, which validate it for
   real and then, seeing a test (``login.sign_in_test_outcome``), record the trace, mark the
   connection verified on success, and send the browser to ``/test-sign-in/results/{trace}``.
4. ``result``: the trace, for the browser that ran the test only (anyone else: None → 404).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyhall.core import audit
from keyhall.core.access import require_member, require_owner
from keyhall.core.connection_service import Context
from keyhall.core.organizations import Organization
from keyhall.core.ports import UnitOfWork
from keyhall.core.sign_in_traces import SignInTrace, TraceKind, TraceNotes
from keyhall.core.vocabulary import ConnectionStatus, Protocol
from keyhall.errors import Conflict, NotFound
from keyhall.login import oidc as oidc_login
from keyhall.login import saml as saml_login
from keyhall.login import sign_in_test_outcome as outcome
from keyhall.login import traces
from keyhall.login.entry import SignInServices
from keyhall.login.flow import LoginFailed
from keyhall.login.records import Kind, SignInTestRecord, SignInTestTicket, new_record_transaction
from keyhall.login.steps import Redirect

#: How long the URL may wait unopened, and how long the whole test may take.
TICKET_TTL = timedelta(minutes=10)
TEST_TTL = timedelta(minutes=30)
#: Protocols a test sign-in can run through from this module.
TESTABLE = (Protocol.OIDC, Protocol.SAML, Protocol.LDAP)


@dataclass(frozen=True)
class SignInTestLink:
    url: str  # single use
    expires_at: datetime


@dataclass(frozen=True)
class OpenedTest:
    """The opened test: the browser's login cookie must become ``browser_secret``."""

    browser_secret: str
    step: Redirect


def begin(uow: UnitOfWork, services: SignInServices, organization: Organization, connection_id: str, *,
          actor: str, request_id: str | None = None) -> SignInTestLink:
    """Start a test sign-in through the organization's connection ``connection_id``, on behalf of
    ``actor`` (audited). Raises NotFound (no such connection in this organization) or Conflict (it
    is switched off, or its protocol cannot be tested from a browser)."""
    now = services.clock()
    conn = uow.connections.get(organization.id, connection_id)
    if conn is None:
        raise NotFound("connection not found", details={"id": connection_id})
    if conn.status is not ConnectionStatus.ACTIVE:
        raise Conflict("the connection is inactive: activate it before testing it", details={"field": "status"})
    if conn.protocol not in TESTABLE:
        raise Conflict(f"test sign-in is not available for {conn.protocol.value} connections",
                       details={"field": "protocol"})
    test = new_record_transaction(SignInTestRecord.new(organization.id, conn.id, actor), now, ttl=TEST_TTL)
    ticket = new_record_transaction(SignInTestTicket(connection_id=conn.id), now, parent_id=test.id, ttl=TICKET_TTL)
    uow.transactions.add(test)
    uow.transactions.add(ticket)
    uow.audit.add(audit.event(organization_id=organization.id, actor=actor, action="connection.test_sign_in_started",
                              target_type="connection", target_id=conn.id, request_id=request_id, now=now,
                              changes={"expires_at": ticket.expires_at.isoformat()}))
    uow.commit()
    base = services.settings.public_url.rstrip("/")
    return SignInTestLink(url=f"{base}/test-sign-in/{ticket.id}", expires_at=ticket.expires_at)


def begin_as(uow: UnitOfWork, services: SignInServices, ctx: Context, org_ref: str,
             connection_id: str) -> SignInTestLink:
    """``begin`` for an API key: the organization's owner (another organization's: NotFound)."""
    organization = require_member(ctx.principal, uow.organizations.get(org_ref))
    require_owner(ctx.principal, organization)
    return begin(uow, services, organization, connection_id, actor=ctx.principal.actor, request_id=ctx.request_id)


def _ticket_gone() -> LoginFailed:
    return LoginFailed("This test sign-in link was already used or has expired. Start a new test.",
                       reason="test_link_invalid", status=404)


def open_ticket(uow: UnitOfWork, services: SignInServices, ticket_id: str, *,
                request_id: str | None = None) -> OpenedTest:
    """The browser opened the link: spend the ticket and send the browser to the IdP. A failure
    to even start (a misconfigured connection) ends the test on its result page too."""
    now = services.clock()
    ticket = uow.transactions.consume(ticket_id[:64], Kind.TEST_TICKET.value, now)
    parent = uow.transactions.get(ticket.parent_id) if ticket is not None and ticket.parent_id else None
    test = SignInTestRecord.maybe_of(parent) if parent is not None else None
    if parent is None or test is None or parent.consumed_at is not None or parent.expired(now):
        raise _ticket_gone()
    uow.commit()  # the ticket is spent, whatever happens next
    conn = uow.connections.get_any(test.connection_id)
    try:
        if conn is None or conn.status is not ConnectionStatus.ACTIVE:
            raise LoginFailed("This sign-in method is switched off by your organization.",
                              reason="connection_inactive", connection=conn)
        if conn.protocol is Protocol.LDAP:  # Keyhall's own form, as in a real sign-in
            return OpenedTest(parent.id, Redirect(f"/sso/{conn.id}/ldap?tx={parent.id}"))
        if conn.protocol is Protocol.OIDC:
            url = oidc_login.begin(uow, services.relying_party, conn, parent, login_hint=None, now=now)
        else:
            url = saml_login.begin(uow, saml_login.service_provider(services.settings), conn, parent, now=now)
        uow.commit()
        return OpenedTest(parent.id, Redirect(url))
    except LoginFailed as exc:
        if conn is None:
            raise
        step = outcome.failed(uow, parent.id, test, exc, TraceNotes(), now=now, request_id=request_id)
        return OpenedTest(parent.id, step)


def result(uow: UnitOfWork, trace_id: str, browser: str | None) -> SignInTrace | None:
    """A test sign-in's trace, when ``browser`` (the login cookie) is the one that ran it."""
    trace = uow.sign_in_traces.get_any(trace_id)
    if trace is None or trace.kind is not TraceKind.TEST or not trace.browser_binding or not browser:
        return None
    if not hmac.compare_digest(trace.browser_binding, traces.browser_binding(browser)):
        return None
    return trace
