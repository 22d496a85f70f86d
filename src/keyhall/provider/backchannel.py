"""Back-Channel Logout (OpenID Connect Back-Channel Logout 1.0): the logout token and the retry rules.

When a session ends (``core.sessions.end_sessions``) a notice is queued for each product that
registered a ``backchannel_logout_uri``. ``keyhall.jobs.LogoutNotifier`` claims the due notices
here (``claim_due``, committed before any network call), POSTs each token as the ``logout_token``
form field (§2.5) through the SSRF guard, and records the outcome (``record_attempt``).

The logout token (§2.4): ``iss``, ``aud`` (the client id), ``iat``, ``exp`` (two minutes later),
``jti`` (the notice id: the same on every retry, so a product can drop duplicates), ``events`` with
the back-channel logout member, ``sub`` (the product's pairwise subject) and ``sid`` (the session),
never ``nonce`` (§2.4: it must not be there, so a logout token cannot pass as an ID token); typed
``logout+jwt`` in its header (§2.4 and RFC 8725 §3.11 explicit typing), signed with the product's
ID token algorithm. A 2xx answer delivers it (§2.8); anything else is retried with a growing delay,
and abandoned after the last one (about a day and a half after the first).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from keyhall.core.ports import UnitOfWork
from keyhall.core.sessions import LogoutNotice
from keyhall.provider import signing
from keyhall.provider.claims import subject_for

EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_TYP = "logout+jwt"
TOKEN_LIFETIME = timedelta(minutes=2)
#: Delay after each failed attempt; after the last, the notice is abandoned (over a day in all).
RETRY_DELAYS = tuple(timedelta(seconds=s) for s in (10, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600,
                                                   12 * 3600))
#: How long a claimed notice is reserved for the instance sending it (longer than one POST can take).
CLAIM_LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Delivery:
    notice: LogoutNotice
    uri: str
    logout_token: str


def logout_token_claims(notice: LogoutNotice, *, issuer: str, now: datetime) -> dict[str, Any]:
    iat = int(now.timestamp())
    return {"iss": issuer, "aud": notice.client_id, "iat": iat, "exp": iat + int(TOKEN_LIFETIME.total_seconds()),
            "jti": notice.id, "events": {EVENT: {}}, "sub": subject_for(notice.client_id, notice.user_id),
            "sid": notice.session_id}


def after_attempt(notice: LogoutNotice, now: datetime, error: str | None) -> LogoutNotice:
    """The notice once an attempt ended: delivered, due again later, or abandoned."""
    attempts = notice.attempts + 1
    if error is None:
        return replace(notice, attempts=attempts, delivered_at=now, last_error=None)
    if attempts > len(RETRY_DELAYS):
        return replace(notice, attempts=attempts, abandoned_at=now, last_error=error)
    return replace(notice, attempts=attempts, next_attempt_at=now + RETRY_DELAYS[attempts - 1], last_error=error)


def claim_due(uow: UnitOfWork, *, issuer: str, now: datetime, limit: int) -> list[Delivery]:
    """Claim up to ``limit`` due notices and sign their tokens; commits. A notice whose product is
    gone or no longer has a back-channel URI is abandoned."""
    deliveries = []
    for notice in uow.session_ends.due(now, limit):
        if not uow.session_ends.claim(notice.id, now, now + CLAIM_LEASE):
            continue  # another instance is sending it
        app = uow.applications.get(notice.client_id)
        if app is None or app.backchannel_logout_uri is None:
            uow.session_ends.record_attempt(replace(notice, abandoned_at=now,
                                                    last_error="the application no longer takes back-channel logout"))
            continue
        key = signing.active_key(uow.signing_keys, app.id_token_alg, now)
        token = signing.sign(key, logout_token_claims(notice, issuer=issuer, now=now), typ=TOKEN_TYP)
        deliveries.append(Delivery(notice=notice, uri=app.backchannel_logout_uri, logout_token=token))
    uow.commit()
    return deliveries


def record_attempt(uow: UnitOfWork, notice: LogoutNotice, now: datetime, error: str | None) -> LogoutNotice:
    """Store an attempt's outcome; commits."""
    done = after_attempt(notice, now, error)
    uow.session_ends.record_attempt(done)
    uow.commit()
    return done
