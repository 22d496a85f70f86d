"""What Keyhall accepts from an IdP that has authenticated someone, and what it vouches for.

- ``vouch_email`` turns the IdP's word on an address into Keyhall's verdict
  (``core.profiles.email_verdict``), fed with the domains the connection's own organization has
  verified in DNS.
- ``check_tenant``: a multi-tenant IdP (Google Workspace, Azure AD) must say the account is in the
  organization's own tenant (``core.presets.check_tenant``).
- ``check_reauthentication`` checks the IdP's authentication time against what the product asked
  (``prompt=login`` / ``max_age``, carried on the trip as ``login.records.Reauthentication``).
- ``idp_amr`` / ``idp_acr`` read what the IdP says of how the person authenticated, for the ID token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from keyhall.core.connections import Connection
from keyhall.core.ports import UnitOfWork
from keyhall.core.presets import check_tenant as _check_tenant
from keyhall.core.profiles import email_domain_name, email_verdict
from keyhall.core.users import LoginRefused, Profile
from keyhall.core.vocabulary import DomainStatus
from keyhall.login.flow import LoginFailed
from keyhall.login.records import Reauthentication

_TOKEN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces: amr values, acr URIs
MAX_AMR_VALUES = 10


def vouch_email(uow: UnitOfWork, conn: Connection, profile: Profile, *, idp_vouched: bool) -> bool:
    """Set ``profile.email_verified`` to Keyhall's verdict. ``idp_vouched``: the IdP's own word
    (OIDC ``email_verified``; for SAML and LDAP, the organization's directory asserting it).
    Returns whether the address's domain is one the connection's organization verified."""
    domain = email_domain_name(profile.email.rpartition("@")[2]) if profile.email else None
    claim = uow.domains.find(conn.organization_id, domain) if domain else None
    verified = [claim.name] if claim is not None and claim.status is DomainStatus.VERIFIED else []
    profile.email_verified = email_verdict(profile, idp_vouched=idp_vouched, verified_domains=verified)
    return bool(verified)


def check_tenant(conn: Connection, claims: Mapping[str, Any]) -> None:
    try:
        _check_tenant(conn.provider, conn.protocol, conn.settings, conn.domains, claims)
    except LoginRefused as exc:
        raise LoginFailed(f"Keyhall cannot sign you in here: {exc.message}.", reason=exc.reason, connection=conn,
                          status=403) from exc


def check_reauthentication(asked: Reauthentication, auth_time: datetime | None, *, started: datetime, now: datetime,
                           skew_seconds: int, conn: Connection) -> None:
    """Raise LoginFailed when the IdP's authentication is older than the product allows:
    ``max_age`` (+ clock skew) before now, or for ``prompt=login`` before the trip began."""
    skew = timedelta(seconds=skew_seconds)
    if asked.max_age is not None:
        if auth_time is None:
            raise LoginFailed("Your organization's sign-in service did not say when you signed in, and your "
                              "application needs a recent sign-in.", reason="auth_time_missing",
                              connection=conn, status=403)
        if now - auth_time > timedelta(seconds=asked.max_age) + skew:
            raise LoginFailed("Your application needs you to have signed in recently. Go back to your "
                              "application and sign in again.", reason="max_age_exceeded", connection=conn,
                              status=403)
    if asked.force and auth_time is not None and auth_time < started - skew:
        raise LoginFailed("Your application asked you to sign in again, but your organization's sign-in "
                          "service did not. Go back to your application and try again.",
                          reason="reauthentication_skipped", connection=conn, status=403)


def idp_amr(value: Any) -> list[str]:
    """The IdP's ``amr`` (RFC 8176) as clean tokens; empty when absent or malformed."""
    if not isinstance(value, list):
        return []
    found = [v for v in value if isinstance(v, str) and _TOKEN.match(v)]
    return list(dict.fromkeys(found))[:MAX_AMR_VALUES]


def idp_acr(value: Any) -> str | None:
    """The IdP's ``acr`` (or SAML AuthnContextClassRef) when it is a clean token."""
    return value if isinstance(value, str) and _TOKEN.match(value) else None
