"""How a test sign-in ends (``login.sign_in_test`` starts it): where a product's sign-in would get
its authorization code, a test sign-in records its trace, marks the connection verified on
success (the same core path as a real first success) and sends the browser to its result page.
No code is issued to any application.

``login.oidc``, ``login.saml`` and ``login.ldap`` call ``running_test`` on the transaction their trip
belongs to, then ``succeeded`` or ``failed`` instead of ``flow.complete``.
"""

from __future__ import annotations

from datetime import datetime

from keyhall.core.connection_service import mark_verified
from keyhall.core.connections import Connection
from keyhall.core.ports import UnitOfWork
from keyhall.core.sign_in_traces import TraceKind, TraceNotes
from keyhall.core.transactions import LoginTransaction
from keyhall.core.users import User
from keyhall.login import flow, traces
from keyhall.login.flow import LoginFailed
from keyhall.login.records import Kind, SignInTestRecord
from keyhall.login.steps import Redirect


def result_path(trace_id: str) -> str:
    """The result page of a test sign-in (readable only by the browser that ran it)."""
    return f"/test-sign-in/results/{trace_id}"


def running_test(uow: UnitOfWork, parent_id: str | None) -> SignInTestRecord | None:
    """The test sign-in ``parent_id`` names, or None when it is a product's sign-in."""
    return sign_in_test_of(uow.transactions.get(parent_id) if parent_id else None)


def sign_in_test_of(parent: LoginTransaction | None) -> SignInTestRecord | None:
    """The test sign-in ``parent`` is, or None when it is a product's sign-in (or nothing)."""
    return SignInTestRecord.maybe_of(parent) if parent is not None and parent.kind == Kind.TEST_SIGN_IN else None


def _spend(uow: UnitOfWork, parent_id: str, conn: Connection, now: datetime) -> LoginTransaction:
    parent = uow.transactions.consume(parent_id, Kind.TEST_SIGN_IN.value, now)
    if parent is None:
        raise LoginFailed("This test sign-in has already finished or expired. Start it again.",
                          reason="transaction_expired", connection=conn)
    return parent


def succeeded(uow: UnitOfWork, parent_id: str, test: SignInTestRecord, conn: Connection, user: User,
              notes: TraceNotes, *, now: datetime, request_id: str | None) -> Redirect:
    """The sign-in worked: trace, audit, and the connection is verified."""
    _spend(uow, parent_id, conn, now)
    notes.user_id = user.id
    trace = traces.record(uow, conn, kind=TraceKind.TEST, notes=notes, now=now, started_by=test.actor,
                          browser_secret=parent_id)
    flow.audit_login(uow, ok=True, reason="ok", now=now, request_id=request_id, connection=conn, user=user,
                     extra={"test_sign_in": True, "started_by": test.actor, "trace_id": trace.id})
    uow.commit()
    if not conn.is_verified:
        mark_verified(uow, conn.id, now, request_id)
    return Redirect(result_path(trace.id))


def failed(uow: UnitOfWork, parent_id: str, test: SignInTestRecord, exc: LoginFailed, notes: TraceNotes, *,
           now: datetime, request_id: str | None) -> Redirect:
    """The sign-in failed: its trace names the failing check and the remedy; the connection stays
    as it was."""
    uow.rollback()
    conn = exc.connection or uow.connections.get_any(test.connection_id)
    if conn is None:
        raise exc
    _spend(uow, parent_id, conn, now)
    trace = traces.record(uow, conn, kind=TraceKind.TEST, notes=notes, now=now, started_by=test.actor,
                          failure=(exc.reason, exc.message, exc.detail), browser_secret=parent_id)
    flow.audit_login(uow, ok=False, reason=exc.reason, now=now, request_id=request_id, connection=conn,
                     extra={"test_sign_in": True, "started_by": test.actor, "trace_id": trace.id,
                            **({"detail": exc.detail} if exc.detail else {})})
    uow.commit()
    return Redirect(result_path(trace.id))
