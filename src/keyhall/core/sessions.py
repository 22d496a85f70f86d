"""Keyhall sessions and how they end (storage-bound; the logout protocols live in ``provider``).

A *session* is one sign-in of one person at one product: the token family its authorization code
started (``provider.model.TokenFamily``). Its id is the ``sid`` of the ID tokens and access tokens
issued in it, and every refresh token rotated from it belongs to it. Keyhall keeps no browser
session of its own (every authorization request authenticates the person again; ``prompt=none``
answers ``login_required``), so a person signed in at two products holds two sessions, each ended
on its own or both together by ending the person's sessions.

``end_sessions`` is the one way a session ends on purpose — RP-Initiated Logout, disabling or
deleting the user, and later SCIM deprovisioning and SAML single logout all call it (or
``end_user_sessions``): it revokes the sessions' refresh tokens (and, through ``sid``, their access
tokens), queues a back-channel logout notice for each product that registered a
``backchannel_logout_uri``, and audits ``session.ended``, all in the caller's transaction. The
notices are delivered later, outside any transaction, by ``keyhall.jobs.LogoutNotifier``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from keyhall.core import audit
from keyhall.core.ports import UnitOfWork


@dataclass(frozen=True)
class LiveSession:
    id: str  # the sid
    client_id: str
    user_id: str


@dataclass
class LogoutNotice:
    """A back-channel logout owed to a product (Back-Channel Logout 1.0 §2.5). The logout token is
    signed when it is sent, so a retry hours later still carries a fresh ``iat``/``exp``; its ``jti``
    is the notice id, the same on every attempt."""

    id: str
    session_id: str
    client_id: str
    user_id: str
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    delivered_at: datetime | None = None
    abandoned_at: datetime | None = None
    last_error: str | None = None


class SessionEndStore(Protocol):
    """Storage of session ends: which sessions are live, revoking them, and the notice outbox."""

    def live(self, *, user_id: str | None = None, session_ids: Sequence[str] = ()) -> list[LiveSession]:
        """Sessions not yet revoked, of ``user_id`` or among ``session_ids``."""
        ...

    def revoke(self, session_ids: Sequence[str], now: datetime) -> None:
        """Revoke the sessions and every refresh token in them."""
        ...

    def queue(self, notices: Sequence[LogoutNotice]) -> None: ...

    def due(self, now: datetime, limit: int) -> list[LogoutNotice]:
        """Undelivered, not abandoned notices whose next attempt is due, oldest first."""
        ...

    def claim(self, notice_id: str, now: datetime, until: datetime) -> bool:
        """Push the notice's next attempt to ``until`` if it is still due at ``now``: True when this
        caller won it (another instance's claim makes it False), so each attempt is made once."""
        ...

    def record_attempt(self, notice: LogoutNotice) -> None:
        """Store ``attempts``, ``next_attempt_at``, ``delivered_at``, ``abandoned_at``, ``last_error``."""
        ...


class SessionEndUnitOfWork(UnitOfWork, Protocol):
    @property
    def session_ends(self) -> SessionEndStore: ...


def end_sessions(uow: SessionEndUnitOfWork, sessions: Sequence[LiveSession], now: datetime, *, reason: str,
                 actor: str, request_id: str | None) -> int:
    """End ``sessions`` in the caller's transaction (the caller commits); how many ended."""
    if not sessions:
        return 0
    uow.session_ends.revoke([s.id for s in sessions], now)
    backchannel: dict[str, bool] = {}
    notices = []
    for session in sessions:
        if session.client_id not in backchannel:
            app = uow.applications.get(session.client_id)
            backchannel[session.client_id] = app is not None and app.backchannel_logout_uri is not None
        if backchannel[session.client_id]:
            notices.append(LogoutNotice(id=str(uuid.uuid4()), session_id=session.id, client_id=session.client_id,
                                        user_id=session.user_id, created_at=now, next_attempt_at=now))
        session_ended(uow, session, now, reason=reason, actor=actor, request_id=request_id)
    uow.session_ends.queue(notices)
    return len(sessions)


def session_ended(uow: UnitOfWork, session: LiveSession, now: datetime, *, reason: str, actor: str,
                  request_id: str | None) -> None:
    """The one place a session's end is recorded (the audit trail; the ``session.ended`` event of
    the event log belongs here too)."""
    user = uow.users.get(session.user_id)
    uow.audit.add(audit.event(
        organization_id=user.organization_id if user else None, actor=actor, action="session.ended",
        target_type="user", target_id=session.user_id, request_id=request_id, now=now,
        changes={"session_id": session.id, "client_id": session.client_id, "reason": reason},
    ))


def end_user_sessions(uow: SessionEndUnitOfWork, user_id: str, now: datetime, *, reason: str, actor: str,
                      request_id: str | None) -> int:
    """End every live session of the user (disabled, deleted, deprovisioned)."""
    return end_sessions(uow, uow.session_ends.live(user_id=user_id), now, reason=reason, actor=actor,
                        request_id=request_id)


class UserSessionsPort(Protocol):
    def revoke_user(self, user_id: str, now: datetime) -> int: ...
    def forget_user(self, user_id: str) -> None: ...


class EndingUserSessions:
    """``user_service.UserSessions`` that ends sessions through ``end_sessions`` (so products with a
    back-channel URI hear of it) before ``inner`` revokes or forgets what is left."""

    def __init__(self, uow: SessionEndUnitOfWork, inner: UserSessionsPort, *, now: datetime, actor: str,
                 request_id: str | None):
        self.uow, self.inner, self.now, self.actor, self.request_id = uow, inner, now, actor, request_id

    def revoke_user(self, user_id: str, now: datetime) -> int:
        ended = end_user_sessions(self.uow, user_id, now, reason="user_disabled", actor=self.actor,
                                  request_id=self.request_id)
        self.inner.revoke_user(user_id, now)
        return ended

    def forget_user(self, user_id: str) -> None:
        end_user_sessions(self.uow, user_id, self.now, reason="user_deleted", actor=self.actor,
                          request_id=self.request_id)
        self.inner.forget_user(user_id)
