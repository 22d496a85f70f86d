"""Sign-in through an organization's LDAP directory.

The person types a username and password into Keyhall's form (``web/templates/ldap.html``,
posted to ``/sso/{cid}/ldap``); the directory checks them (``keyhall.idp.ldap_client``: a
service-account search, then a bind as the entry found, RFC 4513 §5.1.3); the entry's
attributes, mapped like any IdP's, provision the Keyhall user.

``submit`` (the form's POST) counts attempts per username and per client address before calling
``sign_in`` (``keyhall.security.rate_limit``: the limiter and the limits come in as parameters),
and calls ``flow.complete`` after it. Failures raise ``LoginFailed`` with the directory's typed
reason for the audit and a plain message for the person, the same for an unknown username and a
wrong password; the form comes back with the message for the reasons in ``RETRY_REASONS``.
"""

from __future__ import annotations

import time
from datetime import datetime

from keyhall.core.connections import Connection
from keyhall.core.ports import UnitOfWork
from keyhall.core.profiles import map_profile
from keyhall.core.provisioning import LoginRefused, announce_user_created, provision
from keyhall.core.sign_in_traces import TraceKind, TraceNotes
from keyhall.core.transactions import LoginTransaction
from keyhall.core.users import User
from keyhall.core.vocabulary import ConnectionStatus, Protocol
from keyhall.errors import InvalidInput, RateLimited
from keyhall.idp.ldap_outcomes import LdapLoginError, LdapLoginReason
from keyhall.login import flow, traces
from keyhall.login import sign_in_test_outcome as outcome
from keyhall.login.flow import LoginFailed
from keyhall.login.identity import vouch_email
from keyhall.login.records import Kind, SignInTestRecord
from keyhall.login.steps import LdapForm, Redirect, Step, TooManyAttempts
from keyhall.metrics import observe_idp_call
from keyhall.security.outbound import OutboundPolicy
from keyhall.security.rate_limit import Limit, RateLimiter

#: Sign-in attempts through LDAP forms from one client address, whatever the usernames.
ADDRESS_LIMIT = Limit(requests=60, window_seconds=300)

BAD_CREDENTIALS = "That username and password do not match an account."

#: What the person reads, and the HTTP status, for each reason the directory gave.
_OUTCOMES: dict[LdapLoginReason, tuple[str, int]] = {
    "empty_password": ("Enter your password.", 400),
    "user_not_found": (BAD_CREDENTIALS, 401),
    "invalid_credentials": (BAD_CREDENTIALS, 401),
    "ambiguous_user": (BAD_CREDENTIALS, 401),
    "account_locked": ("Your directory account is locked or disabled. Ask your administrator.", 403),
    "directory_unavailable": ("Keyhall could not reach your organization's directory. Try again in a few "
                              "minutes.", 502),
}

#: Reasons whose message (the directory's, not the person's text) is kept in the audit event.
DIRECTORY_DETAIL_REASONS = frozenset({"directory_unavailable", "account_locked"})

#: Reasons for which the route shows the form again (with the message) rather than an error page.
RETRY_REASONS = frozenset({"empty_password", "user_not_found", "invalid_credentials", "ambiguous_user",
                           "invalid_username"})


def sign_in(uow: UnitOfWork, conn: Connection, username: str, password: str, *, now: datetime,
            policy: OutboundPolicy | None = None, notes: TraceNotes | None = None) -> User:
    """The Keyhall user for a username and password the directory accepts; raises LoginFailed.

    ``policy`` says which directory addresses may be contacted (the service's outbound policy:
    ``KEYHALL_ALLOW_INSECURE_IDP_URLS``); without one only public addresses over TLS are.
    """
    if conn.protocol is not Protocol.LDAP:
        raise LoginFailed("This sign-in method does not take a username and password.",
                          reason="protocol_mismatch", connection=conn, status=404)
    if conn.status is not ConnectionStatus.ACTIVE:
        raise LoginFailed("This sign-in method is switched off by your organization.",
                          reason="connection_inactive", connection=conn, status=403)
    mapping = conn.attribute_mappings
    if notes is not None:
        notes.passed("request_sent", f"search and bind at {conn.settings.get('server')}")
    # Imported here: ldap3 and pyasn1 (some 6 MB per worker) load with the first LDAP sign-in.
    from keyhall.idp.ldap_client import authenticate

    started = time.perf_counter()
    try:
        identity = authenticate(conn.settings, conn.secrets, username.strip(), password,
                                attributes=list(mapping.values()), policy=policy)
    except LdapLoginError as exc:
        # A refused password is an answer; only an unusable directory is a failed call.
        observe_idp_call("ldap", time.perf_counter() - started, ok=exc.reason != "directory_unavailable")
        message, status = _OUTCOMES[exc.reason]
        # The directory's own account of an outage or a locked account is worth keeping; the other
        # messages would carry the typed username (anyone's text) into the organization's audit log.
        detail = exc.message if exc.reason in DIRECTORY_DETAIL_REASONS else None
        raise LoginFailed(message, reason=exc.reason, status=status, connection=conn, detail=detail) from exc
    except InvalidInput as exc:  # a username no directory entry can have (control characters, too long)
        raise LoginFailed(BAD_CREDENTIALS, reason="invalid_username", status=401, connection=conn) from exc
    observe_idp_call("ldap", time.perf_counter() - started, ok=True)
    if notes is not None:
        notes.passed("search", f"found {identity.dn}")
        notes.passed("bind", "the directory accepted the password (bound as the entry found)")
    subject_values = identity.attributes.get(mapping.get("subject") or "entryUUID") or []
    subject = subject_values[0] if subject_values else identity.dn
    # The groups the directory reports (member attribute or group search) are where the mapping reads them.
    attributes = {**identity.attributes, mapping.get("groups") or "groups": identity.groups}
    traces.note_attributes(notes, attributes)
    profile = map_profile(conn, attributes, subject=subject)
    # The organization's own directory asserting an address is its word for it; Keyhall's
    # verdict also needs the domain verified by that organization.
    domain_verified = vouch_email(uow, conn, profile, idp_vouched=True)
    traces.note_profile(notes, profile, domain_verified=domain_verified, idp_vouched=True)
    try:
        user, created = provision(uow.users, conn, profile, now)
        traces.note_provisioned(notes, user, created=created)
        if created:
            announce_user_created(uow, user, now)
    except LoginRefused as exc:
        raise LoginFailed(exc.message, reason=exc.reason, connection=conn, status=403) from exc
    return user


def ldap_form(conn: Connection, tx: LoginTransaction, *, username: str | None = None, message: str | None = None,
              status: int = 200) -> LdapForm:
    return LdapForm(conn.id, conn.display_name or conn.branding.get("display_name") or conn.name, tx.id,
                    flow.csrf_of(tx), username=username, message=message, status=status)


def open_form(uow: UnitOfWork, connection_id: str, tx_id: str | None, cookie: str | None, *,
              now: datetime) -> Step:
    """``GET /sso/{cid}/ldap``: the form of an active LDAP connection this sign-in's routing allowed."""
    tx = flow.authorize_transaction(uow, tx_id or cookie, cookie, now, allow_test=True)
    return ldap_form(flow.pinned_connection(uow, tx, connection_id, protocol=Protocol.LDAP), tx)


def submit(uow: UnitOfWork, connection_id: str, tx_id: str, cookie: str | None, csrf: str, username: str,
           password: str, *, address: str, limiter: RateLimiter, username_limit: Limit, address_limit: Limit,
           policy: OutboundPolicy | None, issuer: str, now: datetime, request_id: str | None) -> Step:
    """``POST /sso/{cid}/ldap``: the product's code on success, the form again (with the message) for a
    wrong username or password; raises LoginFailed for a sign-in that cannot go on."""
    name = username.strip()
    tx = flow.form_transaction(uow, tx_id, cookie, csrf, now, allow_test=True)
    conn = flow.pinned_connection(uow, tx, connection_id, protocol=Protocol.LDAP)
    test = SignInTestRecord.maybe_of(tx) if tx.kind == Kind.TEST_SIGN_IN else None
    uow.rollback()  # no database lock held while counting or during the directory round trip
    if not name:
        return ldap_form(conn, tx, message="Enter your username.", status=400)
    try:
        # Only genuine attempts count (live transaction, right CSRF token): per person and per address,
        # keyed by the stored connection id, never the URL's spelling of it.
        limiter.hit(f"ldap:{conn.id}:{name.lower()}", username_limit, now)
        limiter.hit(f"ldap-address:{address}", address_limit, now)
    except RateLimited as exc:
        return TooManyAttempts(f"Too many sign-in attempts. Try again in {exc.retry_after} seconds.")
    notes = TraceNotes()
    if test is not None:  # a test sign-in ends on its result page, whatever the directory said
        try:
            user = sign_in(uow, conn, name, password, now=now, policy=policy, notes=notes)
        except LoginFailed as exc:
            return outcome.failed(uow, tx.id, test, exc, notes, now=now, request_id=request_id)
        return outcome.succeeded(uow, tx.id, test, conn, user, notes, now=now, request_id=request_id)
    try:
        user = sign_in(uow, conn, name, password, now=now, policy=policy, notes=notes)
    except LoginFailed as exc:
        if exc.reason not in RETRY_REASONS:
            exc.trace_notes = notes
            raise
        uow.rollback()
        trace = traces.record(uow, conn, kind=TraceKind.SIGN_IN, notes=notes, now=now,
                              failure=(exc.reason, exc.message, exc.detail))
        flow.audit_login(uow, ok=False, reason=exc.reason, now=now, request_id=request_id, connection=conn,
                         extra={"method": "ldap", "trace_id": trace.id})
        uow.commit()
        return ldap_form(conn, tx, username=name, message=exc.message, status=exc.status)
    url = flow.complete(uow, tx.id, user, connection=conn, authn=flow.Authentication(amr=["pwd"]), issuer=issuer,
                        now=now, request_id=request_id)
    return Redirect(url, finished=True)
