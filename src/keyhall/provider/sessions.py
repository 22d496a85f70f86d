"""Whether what Keyhall issued for a sign-in still stands.

A sign-in at a product becomes a *token family* (``TokenFamily``): its refresh tokens rotate within
it and its access tokens carry its id as ``sid``. Every refresh and every userinfo call re-checks the
family against the database, never a per-process cache, so taking access away holds from the next
request on, on every instance (DESIGN.md, "Access can be taken away at once"):

- the family is not revoked (RFC 7009 revocation, refresh-token reuse, a disabled or deleted user)
  and is younger than its absolute lifetime (rotation does not extend a sign-in forever);
- the user still exists, in an organization that still exists, and is not disabled;
- the connection the person came through still exists, belongs to that organization and is active;
- a password sign-in (``amr`` ``pwd`` without a connection) is still allowed by the organization's
  policy: not after it turned ``disable_email_password`` on, unless the account is its break-glass one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from keyhall.core.organizations import Organization
from keyhall.core.policy import password_login_allowed
from keyhall.core.ports import UnitOfWork
from keyhall.core.tokens import TokenFamily
from keyhall.core.users import User
from keyhall.core.vocabulary import ConnectionStatus

#: The default absolute lifetime of a family (``KEYHALL_REFRESH_TOKEN_MAX_LIFETIME_SECONDS``).
DEFAULT_MAX_LIFETIME = timedelta(days=30)


class SessionEnded(Exception):
    """What was issued for a sign-in no longer stands; ``reason`` is typed, for logs and tests."""

    def __init__(self, reason: str, description: str):
        super().__init__(description)
        self.reason = reason
        self.description = description


def family_end(family: TokenFamily, max_lifetime: timedelta) -> datetime:
    return family.created_at + max_lifetime


def check_session(uow: UnitOfWork, family: TokenFamily | None, now: datetime, *,
                  max_lifetime: timedelta) -> tuple[User, Organization]:
    """The user and organization a family still speaks for; raises ``SessionEnded``."""
    if family is None:
        raise SessionEnded("session_unknown", "the sign-in is unknown")
    if family.revoked_at is not None:
        raise SessionEnded("session_revoked", "the sign-in has been revoked")
    if now >= family_end(family, max_lifetime):
        raise SessionEnded("session_expired", "the sign-in is older than its maximum lifetime; sign in again")
    found = uow.users.with_organization(family.user_id)
    if found is None:
        raise SessionEnded("user_deleted", "the account no longer exists")
    user, org = found
    if user.disabled:
        raise SessionEnded("user_disabled", "the account is disabled")
    if family.connection_id is not None:
        conn = uow.connections.get_any(family.connection_id, shared=True)  # read, never changed
        if conn is None or conn.organization_id != org.id:
            raise SessionEnded("connection_deleted", "the sign-in method the person used no longer exists")
        if conn.status is not ConnectionStatus.ACTIVE:
            raise SessionEnded("connection_inactive", "the sign-in method the person used is switched off")
    elif "pwd" in family.amr and not password_login_allowed(uow, org, user.email or ""):
        raise SessionEnded("password_disabled", "the organization no longer allows password sign-in")
    return user, org
