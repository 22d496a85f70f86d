"""SAML Single Logout with Keyhall as the service provider (saml-profiles-2.0-os §4.4), at
``/sso/{cid}/saml/slo``.

Both directions:

- **IdP-initiated**: the IdP's ``LogoutRequest`` arrives (HTTP-Redirect or HTTP-POST). Once it is
  verified (``protocols.saml.logout``: a pinned-key signature — always required —, issuer,
  destination, time) and its ID is new to the replay cache, the sessions whose SAML sign-in carried
  its NameID (and one of its SessionIndex values, when it names any) end through
  ``core.sessions.end_sessions`` (refresh tokens revoked, back-channel logout queued, audited), and
  the browser goes back to the IdP's SLO URL with a signed ``LogoutResponse`` by the binding the
  request came by (HTTP-Redirect, bindings §3.4, the query signed; HTTP-POST, §3.5, the XML
  signed). A refused request ends nothing.
- **SP-initiated**: when a person signs out at Keyhall (``/oauth2/logout``) and the session that
  ended began with a SAML sign-in whose connection knows the IdP's SLO URL, the browser is sent
  there with Keyhall's ``LogoutRequest`` (its query signed when the connection signs requests);
  the RelayState is a short-lived record holding the request's ID and where to go afterwards. The
  IdP's ``LogoutResponse`` comes back here and the browser continues to the product's registered
  post-logout redirect URI (or Keyhall's signed-out page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote_plus

from keyhall.core.connections import Connection, sp_entity_id
from keyhall.core.ports import UnitOfWork
from keyhall.core.sessions import LiveSession, end_sessions
from keyhall.core.vocabulary import ConnectionStatus, Protocol
from keyhall.errors import SamlResponseError
from keyhall.login.flow import LoginFailed
from keyhall.login.records import Kind, SamlLogoutTrip, new_record_transaction
from keyhall.login.saml import ServiceProvider, _idp
from keyhall.protocols.saml.logout import (
    LogoutExpectations,
    build_logout_request,
    build_logout_response,
    parse_logout_request,
    parse_logout_response,
    post_binding_page,
    post_message_xml,
    read_redirect_query,
    redirect_binding_url,
)

__all__ = ["SloAnswer", "SloRefused", "idp_slo_url", "receive", "send_logout_request", "slo_url"]

LOGOUT_TRIP_TTL = timedelta(minutes=10)
MAX_RELAY_STATE = 80  # saml-bindings-2.0-os §3.4.3


class SloRefused(Exception):
    """A single-logout message Keyhall does not accept; ``description`` is for the person,
    ``reason`` the typed cause. Nothing was ended."""

    def __init__(self, description: str, *, reason: str, status: int = 400):
        super().__init__(description)
        self.description = description
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class SloAnswer:
    """Where the browser goes next: ``redirect_to``, or (None) Keyhall's signed-out page."""

    redirect_to: str | None
    application: str | None = None
    ended: int = 0
    post_page: tuple[str, str] | None = None  # (HTML, its CSP): an auto-posted form to the IdP (HTTP-POST)


def slo_url(public_url: str, conn: Connection) -> str:
    """Keyhall's Single Logout Service for the connection (DESIGN.md: ``/sso/{cid}/saml/slo``)."""
    return f"{public_url.rstrip('/')}/sso/{conn.id}/saml/slo"


def idp_slo_url(conn: Connection) -> str | None:
    """The IdP's SingleLogoutService: the ``slo_url`` setting, else what its metadata said."""
    found = (conn.discovered or {}).get("slo_url")
    chosen = conn.settings.get("slo_url") or found
    return str(chosen) if chosen else None


def _connection(uow: UnitOfWork, connection_id: str) -> Connection:
    conn = uow.connections.get_any(connection_id)
    if conn is None or conn.protocol is not Protocol.SAML:
        raise SloRefused("There is no such SAML connection.", reason="unknown_connection", status=404)
    if conn.status is not ConnectionStatus.ACTIVE:
        raise SloRefused("This sign-in method is switched off by your organization.", reason="connection_inactive",
                         status=403)
    return conn


def _expectations(sp: ServiceProvider, conn: Connection, now: datetime) -> LogoutExpectations:
    try:
        entity, _sso, certificates = _idp(conn)
    except LoginFailed as exc:
        raise SloRefused("This organization's SAML connection is misconfigured.", reason=exc.reason) from exc
    return LogoutExpectations(idp_entity_id=entity, slo_url=slo_url(sp.public_url, conn), certificates=certificates,
                              now=now, require_signature=True, allow_sha1=bool(conn.settings.get("allow_sha1")),
                              skew_seconds=sp.clock_skew_seconds)


def _message(field: str, raw_query: str | None, form: Mapping[str, str] | None,
             expect: LogoutExpectations) -> tuple[bytes, str | None, bool]:
    """(XML, RelayState, query signature verified) of the message ``field`` by either binding."""
    if raw_query is not None:
        seen = read_redirect_query(raw_query, field, expect)
        return seen.xml, seen.relay_state, seen.signed
    form = form or {}
    return post_message_xml(form.get(field, ""), field), form.get("RelayState") or None, False


def _field(raw_query: str | None, form: Mapping[str, str] | None) -> str:
    names = {part.partition("=")[0] for part in raw_query.split("&")} if raw_query is not None else set(form or {})
    if ("SAMLRequest" in names) == ("SAMLResponse" in names):
        raise SloRefused("The sign-out message carries neither a SAMLRequest nor a SAMLResponse.",
                         reason="malformed")
    return "SAMLRequest" if "SAMLRequest" in names else "SAMLResponse"


def receive(uow: UnitOfWork, sp: ServiceProvider, connection_id: str, *, raw_query: str | None,
            form: Mapping[str, str] | None, now: datetime, request_id: str | None) -> SloAnswer:
    """A message at the SLO endpoint: ``raw_query`` (HTTP-Redirect, still URL-encoded) or ``form``
    (HTTP-POST). Raises ``SloRefused``."""
    conn = _connection(uow, connection_id)
    field = _field(raw_query, form)
    expect = _expectations(sp, conn, now)
    if field == "SAMLRequest":
        return _logout_request(uow, sp, conn, expect, raw_query, form, now, request_id)
    return _logout_response(uow, conn, expect, raw_query, form, now)


def _logout_request(uow: UnitOfWork, sp: ServiceProvider, conn: Connection, expect: LogoutExpectations,
                    raw_query: str | None, form: Mapping[str, str] | None, now: datetime,
                    request_id: str | None) -> SloAnswer:
    try:
        xml, relay, query_signed = _message("SAMLRequest", raw_query, form, expect)
        request = parse_logout_request(xml, expect, query_signed=query_signed)
    except SamlResponseError as exc:
        raise SloRefused("Keyhall could not accept the sign-out request your organization's identity provider "
                         "sent.", reason=str(exc.reason)) from exc
    if not uow.replays.remember(conn.id, "slo:" + request.id, request.usable_until, now):
        raise SloRefused("This sign-out request was already used.", reason="replayed")
    sessions = uow.saml_sessions.live(conn.id, request.name_id, request.session_indexes)
    ended = end_sessions(uow, sessions, now, reason="saml_logout", actor=f"connection:{conn.id}",
                         request_id=request_id)
    uow.commit()
    target = idp_slo_url(conn)
    if target is None:
        return SloAnswer(redirect_to=None, ended=ended)
    key = conn.secrets.get("sp_private_key")
    relay_back = relay if relay is not None and len(relay.encode("utf-8")) <= MAX_RELAY_STATE else None
    if raw_query is None:  # answered by the binding the request came by: HTTP-POST, the XML signed
        _id, answer = build_logout_response(in_response_to=request.id, issuer=sp_entity_id(sp.public_url, conn),
                                            destination=target, now=now, signing_key_pem=key)
        return SloAnswer(redirect_to=None, ended=ended,
                         post_page=post_binding_page(target, "SAMLResponse", answer, relay_back))
    _id, answer = build_logout_response(in_response_to=request.id, issuer=sp_entity_id(sp.public_url, conn),
                                        destination=target, now=now)
    url = redirect_binding_url(target, "SAMLResponse", answer, relay_back, signing_key_pem=key)
    return SloAnswer(redirect_to=url, ended=ended)


def _logout_response(uow: UnitOfWork, conn: Connection, expect: LogoutExpectations, raw_query: str | None,
                     form: Mapping[str, str] | None, now: datetime) -> SloAnswer:
    relay = (form or {}).get("RelayState") if raw_query is None else _relay_of(raw_query)
    trip = uow.transactions.consume(relay[:64], Kind.SAML_LOGOUT.value, now) if relay else None
    record = SamlLogoutTrip.maybe_of(trip)
    uow.commit()  # one response per request, whatever its outcome
    if record is None or record.connection_id != conn.id:
        raise SloRefused("This sign-out response is not one Keyhall is waiting for (it may have been used "
                         "already).", reason="state_invalid")
    try:
        xml, _relay, query_signed = _message("SAMLResponse", raw_query, form, expect)
        parse_logout_response(xml, expect, request_id=record.request_id, query_signed=query_signed)
    except SamlResponseError as exc:
        raise SloRefused("Keyhall could not accept the sign-out response your organization's identity provider "
                         "sent.", reason=str(exc.reason)) from exc
    # Keyhall's sessions ended before the trip to the IdP; a non-Success status there changes nothing here.
    return SloAnswer(redirect_to=record.continue_to, application=record.application)


def _relay_of(raw_query: str) -> str | None:
    for part in raw_query.split("&"):
        name, _sep, value = part.partition("=")
        if name == "RelayState":
            return unquote_plus(value)
    return None


def send_logout_request(uow: UnitOfWork, sp: ServiceProvider, ended: Sequence[LiveSession], *,
                        continue_to: str | None, application: str | None, now: datetime) -> str | None:
    """After Keyhall ended ``ended`` (RP-initiated logout): the IdP's SLO URL carrying Keyhall's
    LogoutRequest for the first of them that began with a SAML sign-in on a connection that knows
    the IdP's SLO URL, or None. Commits the RelayState record."""
    for session in ended:
        subject = uow.saml_sessions.subject(session.id)
        conn = uow.connections.get_any(subject.connection_id) if subject else None
        target = idp_slo_url(conn) if conn is not None and conn.protocol is Protocol.SAML else None
        if subject is None or conn is None or target is None:
            continue
        request_id, xml = build_logout_request(
            issuer=sp_entity_id(sp.public_url, conn), destination=target, name_id=subject.name_id,
            name_id_format=subject.name_id_format, session_index=subject.session_index, now=now)
        trip = new_record_transaction(SamlLogoutTrip(connection_id=conn.id, request_id=request_id,
                                                     continue_to=continue_to, application=application),
                                      now, ttl=LOGOUT_TRIP_TTL)
        uow.transactions.add(trip)
        uow.commit()
        key = conn.secrets.get("sp_private_key") if conn.settings.get("sign_requests") else None
        return redirect_binding_url(target, "SAMLRequest", xml, trip.id, signing_key_pem=key)
    return None
