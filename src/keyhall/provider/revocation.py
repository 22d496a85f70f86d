"""Token revocation (RFC 7009) for refresh tokens and access tokens.

- A refresh token ends its whole family (§2.1: "SHOULD also invalidate all access tokens based on
  the same authorization grant"): its other refresh tokens are revoked and userinfo refuses every
  access token carrying the family's ``sid``.
- An access token is revoked alone: its ``jti`` is listed until the token would have expired anyway
  (so the list can be purged), and userinfo refuses it. The person's sign-in stays.
- ``token_type_hint`` only orders the search (§2.1: an unknown or wrong hint extends it).
- A token issued to another client is refused (§2.1) and left alone; a token Keyhall does not know,
  or one already expired or revoked, is answered 200 like a revoked one (§2.2).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from keyhall.core.applications import Application
from keyhall.core.ports import UnitOfWork
from keyhall.provider import signing
from keyhall.provider.grants import TokenError

MAX_TOKEN_LENGTH = 8192


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _not_yours() -> TokenError:
    return TokenError("unauthorized_client", "the token was not issued to this client")


def _revoke_refresh(uow: UnitOfWork, app: Application, token: str, now: datetime) -> bool:
    stored = uow.grants.find_refresh(_hash(token))
    if stored is None:
        return False
    if stored.client_id != app.id:
        raise _not_yours()
    uow.grants.revoke_family(stored.family_id, now)
    return True


def _revoke_access(uow: UnitOfWork, app: Application, token: str, issuer: str, now: datetime) -> bool:
    claims = signing.verify(token, uow.signing_keys, now, typ="at+jwt")
    if claims is None or claims.get("iss") != issuer or not isinstance(claims.get("jti"), str):
        return False  # not a live access token of Keyhall's: nothing to revoke
    if claims.get("client_id") != app.id:
        raise _not_yours()
    sid = claims.get("sid")
    uow.grants.revoke_access_token(str(claims["jti"])[:64], str(sid) if isinstance(sid, str) else None,
                                   datetime.fromtimestamp(float(claims["exp"]), UTC))
    return True


def revoke(uow: UnitOfWork, app: Application, *, token: str | None, token_type_hint: str | None,
           issuer: str, now: datetime) -> None:
    """Revoke ``token`` for the authenticated client ``app``; raises ``TokenError`` for a bad request."""
    if not token:
        raise TokenError("invalid_request", "token is required")
    if len(token) > MAX_TOKEN_LENGTH:
        return  # longer than any token Keyhall issues: unknown
    if token_type_hint == "access_token":
        done = _revoke_access(uow, app, token, issuer, now) or _revoke_refresh(uow, app, token, now)
    else:
        done = _revoke_refresh(uow, app, token, now) or _revoke_access(uow, app, token, issuer, now)
    if done:
        uow.commit()
