"""Keyhall sessions and how they end (storage-bound; the logout protocols live in ``provider``).

A *session* is one sign-in of one person at one product: the token family its authorization code
started (``core.tokens.TokenFamily``). Its id is the ``sid`` of the ID tokens and access tokens
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
from datetime import datetime

from keyhall.core import audit, events
from keyhall.core.ports import UnitOfWork
from keyhall.core.tokens import LiveSession, LogoutNotice

__all__ = ["LiveSession", "LogoutNotice", "end_sessions", "end_user_sessions", "session_ended"]


def end_sessions(uow: UnitOfWork, sessions: Sequence[LiveSession], now: datetime, *, reason: str,
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
    """The one place a session's end is recorded: the audit trail and the ``session.ended`` event."""
    user = uow.users.get(session.user_id)
    organization_id = user.organization_id if user else None
    uow.audit.add(audit.event(
        organization_id=organization_id, actor=actor, action="session.ended",
        target_type="user", target_id=session.user_id, request_id=request_id, now=now,
        changes={"session_id": session.id, "client_id": session.client_id, "reason": reason},
    ))
    events.emit(uow, "session.ended", organization_id=organization_id, now=now,
                data={"session_id": session.id, "client_id": session.client_id, "user_id": session.user_id,
                      "reason": reason})


def end_user_sessions(uow: UnitOfWork, user_id: str, now: datetime, *, reason: str, actor: str,
                      request_id: str | None) -> int:
    """End every live session of the user (disabled, deleted, deprovisioned)."""
    return end_sessions(uow, uow.session_ends.live(user_id=user_id), now, reason=reason, actor=actor,
                        request_id=request_id)
