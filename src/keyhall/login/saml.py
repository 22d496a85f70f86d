"""Keyhall as a SAML 2.0 service provider toward an organization's IdP (Web Browser SSO Profile,
saml-profiles-2.0-os §4.1): AuthnRequest over HTTP-Redirect, Response at the ACS over HTTP-POST.

The ACS is reached by a cross-site POST, which carries no SameSite=Lax cookie; so the ACS
validates and then sends the browser on (a top-level GET, which does carry it) to a completion
step that checks the browser is the one that started the sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyhall.core.connections import Connection, connection_urls, sp_entity_id
from keyhall.core.ports import UnitOfWork
from keyhall.core.profiles import map_profile
from keyhall.core.provisioning import LoginRefused, announce_user_created, provision
from keyhall.core.sign_in_traces import TraceNotes
from keyhall.core.tokens import SamlSubject
from keyhall.core.transactions import LoginTransaction
from keyhall.core.users import User
from keyhall.core.vocabulary import ConnectionStatus, Protocol
from keyhall.errors import CertificateError, KeyhallError, SamlResponseError
from keyhall.login import sign_in_test_outcome as outcome
from keyhall.login import traces
from keyhall.login.flow import Authentication, LoginFailed, check_browser, check_trip_pinned, complete, start
from keyhall.login.identity import check_reauthentication, idp_acr, vouch_email
from keyhall.login.records import Kind, Reauthentication, SamlHandoff, SamlTrip, new_record_transaction
from keyhall.login.sign_in_test_outcome import sign_in_test_of
from keyhall.login.steps import Redirect
from keyhall.protocols.saml.authn_request import build_authn_request, redirect_url
from keyhall.protocols.saml.response import SamlAssertion, SamlExpectations, parse_saml_response
from keyhall.protocols.saml.sp_metadata import sp_metadata_xml
from keyhall.provider.authorize import AuthorizeRequest

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
HANDOFF_TTL = timedelta(minutes=2)


@dataclass(frozen=True)
class ServiceProvider:
    public_url: str
    clock_skew_seconds: int = 60


def service_provider(settings: Any) -> ServiceProvider:
    """Keyhall as a SAML service provider, from the service's settings."""
    return ServiceProvider(public_url=settings.public_url, clock_skew_seconds=settings.clock_skew_seconds)


def _idp(conn: Connection) -> tuple[str, str, list[str]]:
    """(IdP entity id, SSO URL, pinned certificates): explicit settings win over imported metadata."""
    found = conn.discovered or {}
    entity = conn.settings.get("idp_entity_id") or found.get("idp_entity_id")
    sso = conn.settings.get("sso_url") or found.get("sso_url")
    certs = list(conn.settings.get("certificates") or [])
    certs += [c["pem"] for c in found.get("certificates") or [] if isinstance(c, dict) and c.get("pem")]
    if not entity or not sso or not certs:
        raise LoginFailed("This organization's SAML sign-in is misconfigured (IdP entity id, SSO URL or "
                          "certificate missing).", reason="connection_misconfigured", connection=conn)
    return str(entity), str(sso), list(dict.fromkeys(certs))


@dataclass(frozen=True)
class SpMetadata:
    connection_id: str  # the stored (canonical) id
    xml: bytes


def sp_metadata(uow: UnitOfWork, sp: ServiceProvider, connection_id: str, *, now: datetime) -> SpMetadata | None:
    """Keyhall's SP metadata for a SAML connection (valid for a week), or None when there is none."""
    conn = uow.connections.get_any(connection_id)
    if conn is None or conn.protocol is not Protocol.SAML:
        return None
    cert = conn.settings.get("sp_certificate")
    rollover = uow.certificate_watch.sp_rollover(conn.id)
    xml = sp_metadata_xml(
        entity_id=sp_entity_id(sp.public_url, conn), acs_url=str(connection_urls(sp.public_url, conn)["acs_url"]),
        name_id_formats=[str(f) for f in [conn.settings.get("name_id_format")] if f],
        signing_cert_pem=cert, encryption_cert_pem=cert,
        authn_requests_signed=bool(conn.settings.get("sign_requests")),
        valid_until=now + timedelta(days=7),
        next_cert_pem=rollover.next_certificate if rollover and rollover.next_private_key else None,
        slo_url=f"{sp.public_url.rstrip('/')}/sso/{conn.id}/saml/slo",
    )
    return SpMetadata(connection_id=conn.id, xml=xml)


def _rollover_keys(uow: UnitOfWork, conn: Connection, now: datetime) -> tuple[str, ...]:
    """During an SP key rollover, the next and previous SP keys decrypt too."""
    rollover = uow.certificate_watch.sp_rollover(conn.id)
    return rollover.decryption_keys(now) if rollover else ()


def begin(uow: UnitOfWork, sp: ServiceProvider, conn: Connection, parent: LoginTransaction, *,
          now: datetime) -> str:
    """The IdP's SSO URL carrying a (signed, when configured) AuthnRequest; RelayState is the trip id."""
    _entity, sso_url, _certs = _idp(conn)
    urls = connection_urls(sp.public_url, conn)
    # SAML has no max_age: the product's prompt=login or max_age both ask the IdP for ForceAuthn,
    # and the AuthnInstant that comes back is checked against them.
    reauth = Reauthentication.of(parent)
    request = build_authn_request(
        sp_entity_id=sp_entity_id(sp.public_url, conn), acs_url=str(urls["acs_url"]), destination=sso_url,
        name_id_format=conn.settings.get("name_id_format"),
        force_authn=bool(conn.settings.get("force_authn")) or reauth.asked, now=now,
    )
    trip = new_record_transaction(SamlTrip(connection_id=conn.id, request_id=request.id, reauth=reauth), now,
                                  parent_id=parent.id)
    uow.transactions.add(trip)
    key = conn.secrets.get("sp_private_key") if conn.settings.get("sign_requests") else None
    return redirect_url(sso_url, request, trip.id, signing_key_pem=key)


def receive(uow: UnitOfWork, sp: ServiceProvider, connection_id: str, form: dict[str, str],
            now: datetime, *, notes: TraceNotes | None = None, parent: LoginTransaction | None = None,
            ) -> tuple[Connection, User, LoginTransaction | None, Authentication]:
    """Validate a Response at the ACS and provision the person. Returns the trip (None when the
    sign-in was IdP-initiated) and how the IdP authenticated the person.

    Nothing of a refused Response's text is recorded: until its signature is verified it is
    anyone's text (a StatusMessage, an Issuer), so the audit trail gets the typed reason only.
    ``parent``: the trip's sign-in, when the caller has read it already."""
    conn = uow.connections.get_any(connection_id)
    if conn is None or conn.status is not ConnectionStatus.ACTIVE:
        raise LoginFailed("This sign-in method is switched off by your organization.",
                          reason="connection_inactive", connection=conn, status=403)
    relay = form.get("RelayState")
    trip = uow.transactions.consume(relay, Kind.SAML.value, now) if relay else None
    record = SamlTrip.maybe_of(trip)
    uow.commit()  # the trip is spent before validation, whatever its outcome: one response per request
    if relay and trip is None and not conn.settings.get("allow_idp_initiated"):
        raise LoginFailed("This sign-in response is not one Keyhall is waiting for (it may have been used "
                          "already). Go back to your application and start again.", reason="state_invalid",
                          connection=conn)
    if trip is not None and (record is None or record.connection_id != conn.id):
        raise LoginFailed("This sign-in response is for another sign-in method.", reason="state_invalid",
                          connection=conn)
    if trip is not None:
        check_trip_pinned(uow, trip, conn, parent=parent)
    entity, sso, certs = _idp(conn)
    if notes is not None:
        notes.passed("request_sent", f"AuthnRequest (HTTP-Redirect) to {sso}" if record else
                     "none: the sign-in was IdP-initiated")
    expect = SamlExpectations(
        acs_url=str(connection_urls(sp.public_url, conn)["acs_url"]), sp_entity_id=sp_entity_id(sp.public_url, conn),
        idp_entity_id=entity, certificates=certs, request_id=record.request_id if record else None,
        allow_idp_initiated=bool(conn.settings.get("allow_idp_initiated")),
        allow_sha1=bool(conn.settings.get("allow_sha1")), now=now, skew_seconds=sp.clock_skew_seconds,
        sp_private_key=conn.secrets.get("sp_private_key"), sp_other_private_keys=_rollover_keys(uow, conn, now),
    )
    try:
        assertion = parse_saml_response(form.get("SAMLResponse", ""), expect)
    except SamlResponseError as exc:
        if notes is not None:
            notes.failure_detail = exc.message
        raise LoginFailed("Keyhall could not accept the sign-in your organization's identity provider sent.",
                          reason=str(exc.reason), connection=conn) from exc
    except (CertificateError, ValueError) as exc:  # an unusable pinned certificate: configuration, not login
        raise LoginFailed("This organization's SAML sign-in is misconfigured (its IdP certificate cannot be "
                          "used).", reason="connection_misconfigured", connection=conn, detail=str(exc)) from exc
    # Kept until the assertion stops being usable, which the protocol bounds (an hour after issue at
    # most, protocols.saml.times): an assertion "valid until 9999" is not stored until 9999.
    if not uow.replays.remember(conn.id, assertion.assertion_id, assertion.not_on_or_after, now):
        raise LoginFailed("This sign-in response was already used.", reason="replayed", connection=conn)
    if notes is not None:
        _note_assertion(notes, assertion, expect)
    if trip is not None and record is not None:
        check_reauthentication(record.reauth, assertion.authn_instant, started=trip.created_at, now=now,
                               skew_seconds=sp.clock_skew_seconds, conn=conn)
    try:
        user, created = provision(uow.users, conn, _profile(uow, conn, assertion, notes), now)
        traces.note_provisioned(notes, user, created=created)
        if created:
            announce_user_created(uow, user, now)
    except LoginRefused as exc:
        raise LoginFailed(exc.message, reason=exc.reason, connection=conn, status=403) from exc
    except KeyhallError as exc:
        raise LoginFailed("Keyhall could not finish your sign-in.", reason=exc.code, connection=conn) from exc
    authn = Authentication(amr=["ext"], auth_time=assertion.authn_instant,
                           acr=idp_acr(assertion.authn_context_class_ref),
                           saml_subject=SamlSubject(connection_id=conn.id, name_id=assertion.name_id,
                                                    name_id_format=assertion.name_id_format,
                                                    session_index=assertion.session_index))
    return conn, user, trip, authn


def _note_assertion(notes: TraceNotes, assertion: SamlAssertion, expect: SamlExpectations) -> None:
    notes.passed("response", "status Success, one assertion")
    notes.passed("signature", f"{assertion.signed_element} signed with {', '.join(assertion.signature_methods)}; "
                              f"verified with a configured IdP certificate")
    notes.passed("destination", f"addressed to {expect.acs_url}")
    notes.passed("issuer", f"issued by {assertion.issuer}")
    notes.passed("audience", f"meant for {expect.sp_entity_id}")
    notes.passed("validity", f"usable until {assertion.not_on_or_after.isoformat()}; clock skew allowed "
                             f"{expect.skew_seconds} s")
    notes.passed("recipient", f"bearer confirmation for {expect.acs_url}")
    notes.passed("in_response_to", f"answers AuthnRequest {assertion.in_response_to}" if assertion.in_response_to
                 else "none: IdP-initiated sign-in, allowed on this connection")
    notes.passed("replay", f"assertion {assertion.assertion_id} was not seen before")


def _profile(uow: UnitOfWork, conn: Connection, assertion: SamlAssertion, notes: TraceNotes | None = None) -> Any:
    attributes: dict[str, Any] = dict(assertion.attributes)
    if assertion.name_id_format == EMAIL_FORMAT and not attributes.get(conn.attribute_mappings.get("email", "email")):
        attributes[conn.attribute_mappings.get("email", "email")] = [assertion.name_id]
    traces.note_attributes(notes, {"NameID": [assertion.name_id], **attributes})
    profile = map_profile(conn, attributes, subject=assertion.name_id)
    # The organization's own IdP asserting an address is its word for it; Keyhall's verdict also
    # needs the domain verified by that organization.
    domain_verified = vouch_email(uow, conn, profile, idp_vouched=True)
    traces.note_profile(notes, profile, domain_verified=domain_verified, idp_vouched=True)
    return profile


def handoff(uow: UnitOfWork, conn: Connection, user: User, parent_id: str, now: datetime,
            authn: Authentication) -> str:
    """A short-lived, single-use step from the ACS to the completion page; returns its id."""
    step = new_record_transaction(SamlHandoff(connection_id=conn.id, user_id=user.id, amr=tuple(authn.amr),
                                              acr=authn.acr, auth_time=authn.auth_time, subject=authn.saml_subject),
                                  now, parent_id=parent_id, ttl=HANDOFF_TTL)
    uow.transactions.add(step)
    return step.id


def take_handoff(uow: UnitOfWork, connection_id: str, step_id: str, now: datetime, *,
                 browser: str | None) -> LoginTransaction:
    """The ACS's single-use step to the completion page, for the browser that started the sign-in
    (``browser``: its login cookie, any text). The browser is checked before the step is spent, so
    a completion URL opened elsewhere (or a garbled cookie) does not end the person's sign-in."""
    seen = uow.transactions.get(step_id) if step_id else None
    record = SamlHandoff.maybe_of(seen)
    if (seen is None or record is None or seen.consumed_at is not None or record.connection_id != connection_id
            or seen.parent_id is None):
        raise _handoff_gone(uow, connection_id)
    try:
        check_browser(seen.parent_id, browser)
    except LoginFailed as exc:  # the connection is looked up for the audit only when the check fails
        exc.connection = uow.connections.get_any(connection_id)
        raise
    step = uow.transactions.consume(seen.id, Kind.SAML_HANDOFF.value, now)
    if step is None or step.parent_id != seen.parent_id:
        raise _handoff_gone(uow, connection_id)
    return step


def _handoff_gone(uow: UnitOfWork, connection_id: str) -> LoginFailed:
    return LoginFailed("This sign-in has already finished or expired. Go back to your application and start "
                       "again.", reason="state_invalid", connection=uow.connections.get_any(connection_id))


def handed_authentication(handed: SamlHandoff) -> Authentication:
    """How the IdP authenticated the person, as the ACS handed it to the completion step."""
    return Authentication(amr=list(handed.amr), acr=idp_acr(handed.acr), auth_time=handed.auth_time,
                          saml_subject=handed.subject)


def idp_initiated_request(conn: Connection) -> AuthorizeRequest:
    """The authorization request an IdP-initiated sign-in answers: the connection's configured
    application and redirect URI (no state, nonce or PKCE — the product must accept that)."""
    return AuthorizeRequest(
        client_id=str(conn.settings["idp_initiated_client_id"]),
        redirect_uri=str(conn.settings["idp_initiated_redirect_uri"]), scope="openid email profile groups",
        state=None, nonce=None, code_challenge=None, code_challenge_method=None, prompt=None, login_hint=None,
        organization=conn.organization_id, connection=conn.id, domain=None,
    )


def acs(uow: UnitOfWork, sp: ServiceProvider, connection_id: str, form: dict[str, str], *, issuer: str,
        now: datetime, request_id: str | None) -> Redirect:
    """The IdP's response at the ACS: on to the completion step (SP-initiated), or straight to the
    configured application (IdP-initiated, opted in per connection); for a test sign-in, on to its
    result page. Raises LoginFailed."""
    notes = TraceNotes()
    relay = form.get("RelayState")
    seen = uow.transactions.get(relay) if relay else None
    parent = (uow.transactions.get(seen.parent_id) if seen is not None and seen.kind == Kind.SAML.value
              and seen.parent_id else None)
    test = sign_in_test_of(parent)
    try:
        conn, user, trip, authn = receive(uow, sp, connection_id, form, now, notes=notes, parent=parent)
    except LoginFailed as exc:
        exc.trace_notes = notes
        if test is None or seen is None:
            raise
        return outcome.failed(uow, str(seen.parent_id), test, exc, notes, now=now, request_id=request_id)
    if test is not None and trip is not None and trip.parent_id:
        # No handoff: the test ends here, and its result page checks the browser.
        return outcome.succeeded(uow, trip.parent_id, test, conn, user, notes, now=now, request_id=request_id)
    if trip is not None and trip.parent_id:
        step = handoff(uow, conn, user, trip.parent_id, now, authn)
        uow.commit()
        return Redirect(f"/sso/{conn.id}/saml/complete?step={step}")
    unsolicited = idp_initiated_request(conn)
    app = uow.applications.get(unsolicited.client_id)
    if app is None or unsolicited.redirect_uri not in app.redirect_uris:
        raise LoginFailed("IdP-initiated sign-in is misconfigured for this connection (unknown application "
                          "or redirect URI).", reason="idp_initiated_misconfigured", connection=conn)
    parent = start(uow, unsolicited, now)
    url = complete(uow, parent.id, user, connection=conn, authn=authn, issuer=issuer, now=now,
                   request_id=request_id)
    return Redirect(url)


def finish_handoff(uow: UnitOfWork, connection_id: str, step_id: str, *, browser: str | None, issuer: str,
                   now: datetime, request_id: str | None) -> Redirect:
    """The completion step, in the browser that started the sign-in: the product's code."""
    handed = take_handoff(uow, connection_id, step_id[:64], now, browser=browser)
    uow.commit()
    conn = uow.connections.get_any(connection_id)
    record = SamlHandoff.of(handed)
    user = uow.users.get(record.user_id)
    if conn is None or user is None:
        raise LoginFailed("This sign-in can no longer finish.", reason="state_invalid")
    url = complete(uow, str(handed.parent_id), user, connection=conn, authn=handed_authentication(record),
                   issuer=issuer, now=now, request_id=request_id)
    return Redirect(url, finished=True)
