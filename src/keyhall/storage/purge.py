"""Deleting rows that no longer serve any purpose, so that nothing an unauthenticated caller can
make Keyhall write (sign-in transactions, rate counters, failed sign-ins in the audit trail) grows
without bound.

What goes, and when:

- sign-in transactions (``login_transactions``): once expired; an expired one is refused anyway.
- authorization codes: once expired, unless the code was redeemed and the refresh-token family it
  produced still has a live token — a replayed code revokes that family (RFC 6749 §4.1.2), so a
  spent code is kept exactly as long as that can still help.
- refresh tokens: a family's tokens go together, once none of them can be redeemed any more (each
  expired, revoked or spent). A spent token is kept while its family has a live token, because
  presenting it again is how theft is detected and the family revoked (OAuth 2.0 Security BCP
  §4.14.2); once the family is dead there is nothing left to revoke.
- token families: once none of their refresh tokens is left (purged as above). Their access tokens
  are refused either way: a family that is gone is as dead as a revoked one.
- individually revoked access tokens: once they would have expired anyway.
- SAML replay-cache rows: once past their expiry, when the assertion would be refused as expired.
- rate-limit counters: once their window has ended.
- back-channel logout notices: a week after they were delivered or given up on.
- setup-portal sessions once ended, and portal links once expired with no session left (an
  unopened link is refused after its expiry anyway; the audit trail keeps who made and opened it).
- audit events: older than ``KEYHALL_AUDIT_RETENTION_DAYS`` (0 keeps them all).
- events (``GET /v1/events``): older than ``KEYHALL_EVENT_RETENTION_DAYS`` (0 keeps them all),
  with their webhook deliveries (the foreign key cascades).
- sign-in traces: older than ``KEYHALL_TRACE_RETENTION_DAYS`` (default 7; 0 keeps them all).

Rows are deleted in batches of ``batch_size``, each in a transaction of its own, so no lock is held
for long and the sign-in traffic interleaves; the scans use the expiry indexes. Several instances
may purge at once: a row deleted twice is deleted once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, delete, exists, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, aliased

from keyhall.storage.models import (
    AuditEventRow,
    AuthorizationCodeRow,
    EventRow,
    LoginTransactionRow,
    LogoutNoticeRow,
    PortalLinkRow,
    PortalSessionRow,
    RateCounterRow,
    RefreshTokenRow,
    RevokedAccessTokenRow,
    SamlReplayRow,
    SignInTraceRow,
    TokenFamilyRow,
)

DEFAULT_BATCH = 500
#: How long a delivered or abandoned back-channel logout notice is kept (to look into a product's complaint).
LOGOUT_NOTICE_RETENTION = timedelta(days=7)
#: The counts ``purge_expired`` answers, in this order.
KINDS = ("sign_in_transactions", "authorization_codes", "refresh_tokens", "token_families",
         "revoked_access_tokens", "saml_replays", "rate_counters", "logout_notices", "portal_sessions", "portal_links",
         "audit_events", "events", "sign_in_traces")


def _live_token_in_family(family: ColumnElement[Any] | InstrumentedAttribute[Any],
                          now: datetime) -> ColumnElement[bool]:
    """Whether the family has a token that can still be redeemed."""
    live = aliased(RefreshTokenRow)
    return exists().where(live.family_id == family, live.used_at.is_(None), live.revoked_at.is_(None),
                          live.expires_at > now)


def _drain(engine: Engine, key: list[InstrumentedAttribute[Any]], condition: ColumnElement[bool], *,
           batch_size: int, stop: Callable[[], bool]) -> int:
    """Delete the rows matching ``condition``, ``batch_size`` at a time, one transaction each."""
    table = key[0].class_
    total = 0
    while not stop():
        batch = select(*key).where(condition).limit(batch_size)
        chosen = key[0].in_(batch.scalar_subquery()) if len(key) == 1 else tuple_(*key).in_(batch)
        with engine.begin() as connection:
            deleted = connection.execute(delete(table).where(chosen))
        count = int(getattr(deleted, "rowcount", 0) or 0)
        total += count
        if count < batch_size:
            break
    return total


def purge_expired(engine: Engine, now: datetime, *, audit_retention_days: int = 0, event_retention_days: int = 0,
                  trace_retention_days: int = 0, batch_size: int = DEFAULT_BATCH,
                  stop: Callable[[], bool] | None = None) -> dict[str, int]:
    """Delete what has expired at ``now`` (see the module docstring); the number of rows per kind.
    ``stop()`` is asked between batches and ends the purge early when true."""
    halt = stop or (lambda: False)
    code_family = AuthorizationCodeRow.grant["family_id"].as_string()
    conditions: dict[str, tuple[list[InstrumentedAttribute[Any]], ColumnElement[bool]]] = {
        "sign_in_transactions": ([LoginTransactionRow.id], LoginTransactionRow.expires_at <= now),
        "authorization_codes": ([AuthorizationCodeRow.code_hash], and_(
            AuthorizationCodeRow.expires_at <= now,
            or_(AuthorizationCodeRow.used_at.is_(None), code_family.is_(None),
                ~_live_token_in_family(code_family, now)))),
        "refresh_tokens": ([RefreshTokenRow.token_hash], and_(
            or_(RefreshTokenRow.expires_at <= now, RefreshTokenRow.revoked_at.is_not(None)),
            ~_live_token_in_family(RefreshTokenRow.family_id, now))),
        "token_families": ([TokenFamilyRow.id],
                           ~exists().where(RefreshTokenRow.family_id == TokenFamilyRow.id)),
        "revoked_access_tokens": ([RevokedAccessTokenRow.jti], RevokedAccessTokenRow.expires_at <= now),
        "saml_replays": ([SamlReplayRow.connection_id, SamlReplayRow.assertion_id], SamlReplayRow.expires_at <= now),
        "rate_counters": ([RateCounterRow.key, RateCounterRow.window_start],
                          RateCounterRow.expires_at <= int(now.timestamp())),
        "logout_notices": ([LogoutNoticeRow.id], or_(
            LogoutNoticeRow.delivered_at < now - LOGOUT_NOTICE_RETENTION,
            LogoutNoticeRow.abandoned_at < now - LOGOUT_NOTICE_RETENTION)),
        "portal_sessions": ([PortalSessionRow.id], PortalSessionRow.expires_at <= now),
        "portal_links": ([PortalLinkRow.id], and_(
            PortalLinkRow.expires_at <= now, ~exists().where(PortalSessionRow.link_id == PortalLinkRow.id))),
    }
    if audit_retention_days > 0:
        cutoff = now - timedelta(days=audit_retention_days)
        conditions["audit_events"] = ([AuditEventRow.id], AuditEventRow.created_at < cutoff)
    if event_retention_days > 0:
        conditions["events"] = ([EventRow.sequence], EventRow.created_at < now - timedelta(days=event_retention_days))
    if trace_retention_days > 0:
        conditions["sign_in_traces"] = ([SignInTraceRow.id],
                                        SignInTraceRow.created_at < now - timedelta(days=trace_retention_days))
    counts = dict.fromkeys(KINDS, 0)
    for kind, (key, condition) in conditions.items():
        counts[kind] = _drain(engine, key, condition, batch_size=batch_size, stop=halt)
    return counts
