"""The setup portal's rules: links, the sessions they open, and what a session may do.

An owner (or an admin where the organization lets admins configure SSO) issues a **portal link**
for one organization and one intent (``sso``, ``domain_verification``, ``directory_sync``,
``certificate_renewal``). The link carries a high-entropy token; only its SHA-256 is stored. It
opens **once**, and only before ``expires_at``. Opening it starts a **portal session**: a second
random secret (the browser's cookie, also stored only as a hash), scoped to that organization and
intent, ending at its own ``expires_at``, with a synchronizer CSRF token every form must send back.

Inside the portal the session acts as a :class:`~keyhall.core.access.Principal` of that
organization with the owner's rights over SSO configuration, audited as ``portal-link:<link id>``;
the services it calls are the same ones the native API calls, so the same rules and messages hold.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from keyhall.core import audit, connection_service
from keyhall.core.access import Principal, require_sso_writer
from keyhall.core.connection_service import Context, organization_for
from keyhall.core.connections import Connection, ConnectionInput
from keyhall.core.ports import IdPInspector, UnitOfWork
from keyhall.core.vocabulary import Role
from keyhall.errors import InvalidInput, NotFound, PermissionDenied
from keyhall.security.tokens import same_token

PORTAL_PATH = "/portal"
TOKEN_BYTES = 32  # 256 bits: the link and the session cookie cannot be guessed


class Intent(StrEnum):
    SSO = "sso"
    DOMAIN_VERIFICATION = "domain_verification"
    DIRECTORY_SYNC = "directory_sync"
    CERTIFICATE_RENEWAL = "certificate_renewal"


class Area(StrEnum):
    """A part of the portal."""

    CONNECTIONS = "sso"
    DOMAINS = "domains"
    DIRECTORIES = "directories"
    CERTIFICATES = "certificates"


AREAS: dict[Intent, tuple[Area, ...]] = {
    # Setting up SSO includes proving the email domains it routes and seeing the certificates it trusts.
    Intent.SSO: (Area.CONNECTIONS, Area.DOMAINS, Area.CERTIFICATES),
    Intent.DOMAIN_VERIFICATION: (Area.DOMAINS,),
    Intent.DIRECTORY_SYNC: (Area.DIRECTORIES,),
    # Renewing a certificate is done on the connection: its page is part of the renewal.
    Intent.CERTIFICATE_RENEWAL: (Area.CERTIFICATES, Area.CONNECTIONS),
}
"""What each intent opens; the first area is where the link lands."""


@dataclass
class PortalLink:
    id: str
    organization_id: str
    intent: Intent
    token_hash: str
    return_url: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass
class PortalSession:
    id: str
    link_id: str
    organization_id: str
    intent: Intent
    secret_hash: str
    csrf_token: str
    return_url: str | None
    draft_connection_id: str  # the id a connection created next gets: the IdP needs its URLs first
    created_at: datetime
    expires_at: datetime

    @property
    def actor(self) -> str:
        return f"portal-link:{self.link_id}"


class PortalStore(Protocol):
    """Storage of portal links and sessions (``storage.repos.portal``)."""

    def add_link(self, link: PortalLink) -> None: ...
    def use_link(self, token_hash: str, now: datetime) -> tuple[PortalLink | None, str]:
        """The link, marked used, and "opened" when this call used it; otherwise (link or None,
        why): "unknown", "used" or "expired"."""
        ...
    def add_session(self, session: PortalSession) -> None: ...
    def find_session(self, secret_hash: str) -> PortalSession | None: ...
    def set_draft_connection(self, session_id: str, connection_id: str) -> None: ...


@dataclass(frozen=True)
class IssuedLink:
    link: PortalLink
    url: str


@dataclass(frozen=True)
class OpenedSession:
    session: PortalSession
    secret: str  # the cookie's value; never stored


def store_of(uow: Any) -> PortalStore:
    """The portal repository the unit of work holds (``storage.unit_of_work``)."""
    store: PortalStore = uow.portal
    return store


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_intent(value: str) -> Intent:
    try:
        return Intent(value)
    except ValueError:
        raise InvalidInput(f"intent: must be one of {', '.join(i.value for i in Intent)}", field="intent") from None


def check_return_url(value: str | None) -> str | None:
    """An absolute http(s) URL without credentials, or None."""
    if value is None:
        return None
    if len(value) > 2048:
        raise InvalidInput("return_url: must be at most 2048 characters", field="return_url")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("return_url: must be an absolute http or https URL", field="return_url")
    if parts.username or parts.password or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise InvalidInput("return_url: must not hold credentials, spaces or control characters", field="return_url")
    return value


def issue_link(uow: UnitOfWork, store: PortalStore, ctx: Context, org_ref: str, *, intent: str,
               return_url: str | None, public_url: str, ttl: timedelta) -> IssuedLink:
    """A new single-use link into the portal for ``org_ref``; the token appears only in the URL."""
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    kind = parse_intent(intent)
    back = check_return_url(return_url)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = PortalLink(id=str(uuid.uuid4()), organization_id=org.id, intent=kind, token_hash=hash_token(token),
                      return_url=back, created_by=ctx.principal.actor, created_at=ctx.now, expires_at=ctx.now + ttl)
    store.add_link(link)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="portal_link.created", target_type="portal_link",
        target_id=link.id, request_id=ctx.request_id, now=ctx.now,
        changes={"intent": {"from": None, "to": kind.value}, "return_url": {"from": None, "to": back},
                 "expires_at": {"from": None, "to": audit_time(link.expires_at)}},
    ))
    uow.commit()
    return IssuedLink(link=link, url=f"{public_url.rstrip('/')}{PORTAL_PATH}/open/{token}")


def audit_time(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def open_link(uow: UnitOfWork, store: PortalStore, token: str, *, now: datetime, ttl: timedelta,
              request_id: str | None) -> OpenedSession:
    """Use the link (once) and start its portal session. A link that is unknown, already used or
    expired is ``NotFound`` with ``details["reason"]`` saying which (the page tells them apart)."""
    if not token or len(token) > 128:
        raise NotFound("this setup link does not exist", details={"reason": "unknown"})
    link, outcome = store.use_link(hash_token(token), now)
    if link is None or outcome != "opened":
        uow.rollback()
        messages = {"used": "this setup link was already used; ask for a new one",
                    "expired": "this setup link has expired; ask for a new one"}
        raise NotFound(messages.get(outcome, "this setup link does not exist"), details={"reason": outcome})
    secret = secrets.token_urlsafe(TOKEN_BYTES)
    session = PortalSession(
        id=str(uuid.uuid4()), link_id=link.id, organization_id=link.organization_id, intent=link.intent,
        secret_hash=hash_token(secret), csrf_token=secrets.token_urlsafe(TOKEN_BYTES), return_url=link.return_url,
        draft_connection_id=str(uuid.uuid4()), created_at=now, expires_at=now + ttl,
    )
    store.add_session(session)
    uow.audit.add(audit.event(
        organization_id=link.organization_id, actor=session.actor, action="portal_link.opened",
        target_type="portal_link", target_id=link.id, request_id=request_id, now=now,
        changes={"session_expires_at": {"from": None, "to": audit_time(session.expires_at)}},
    ))
    uow.commit()
    return OpenedSession(session=session, secret=secret)


def current_session(store: PortalStore, secret: str | None, now: datetime) -> PortalSession:
    """The live session the cookie names; ``PermissionDenied`` when there is none or it has ended."""
    if not secret or len(secret) > 128:
        raise PermissionDenied("no portal session: open the setup link you were sent")
    session = store.find_session(hash_token(secret))
    if session is None:
        raise PermissionDenied("no portal session: open the setup link you were sent")
    if session.expires_at <= now:
        raise PermissionDenied("your portal session has ended; ask for a new setup link")
    return session


def check_csrf(session: PortalSession, given: str | None, *, origin: str | None, public_url: str) -> None:
    """A form post must carry the session's token, and come from Keyhall's own origin when the
    browser says where it came from."""
    if origin is not None and origin.rstrip("/") != origin_of(public_url):
        raise PermissionDenied("this form was sent from another site")
    if not same_token(given, session.csrf_token):
        raise PermissionDenied("this form has expired or was not sent from the portal; reload the page")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def require_area(session: PortalSession, area: Area) -> None:
    """A part of the portal the link was not made for is absent."""
    if area not in AREAS[session.intent]:
        raise NotFound("this page is not part of your setup link")


def principal_for(session: PortalSession) -> Principal:
    """The session as a caller of the core's services: this organization, owner rights, its own actor."""
    return Principal(key_id=session.id, organization_id=session.organization_id, role=Role.OWNER,
                     acting_as=session.actor)


def context_for(session: PortalSession, *, request_id: str | None, now: datetime) -> Context:
    return Context(principal=principal_for(session), request_id=request_id, now=now)


def create_connection(uow: UnitOfWork, store: PortalStore, session: PortalSession, ctx: Context,
                      data: ConnectionInput, inspector: IdPInspector) -> Connection:
    """Create a connection (the native API's service and rules) with the id whose URLs the portal
    already showed for the IdP, then hand out a fresh id for the next one."""
    conn = connection_service.create_connection(uow, ctx, session.organization_id, data, inspector,
                                                new_id=session.draft_connection_id)
    session.draft_connection_id = str(uuid.uuid4())
    store.set_draft_connection(session.id, session.draft_connection_id)
    uow.commit()
    return conn


def domain_problem(last_error: str | None) -> str | None:
    """Why a domain's last check did not prove it, in the terms the portal shows: "no_record" (DNS
    answered without the proof), "taken" (another organization verified it) or "dns_unreachable"
    (DNS did not answer: nothing was learnt). The reasons are those ``core.domain_service.judge`` records."""
    if not last_error:
        return None
    if "verified by another organization" in last_error:
        return "taken"
    if last_error.startswith(("no TXT record at", "the TXT records at")):
        return "no_record"
    return "dns_unreachable"
