"""Keyhall as an OpenID Connect relying party toward an organization's IdP (OIDC Core §3.1):
authorization request with ``state``, ``nonce`` and PKCE; callback with code exchange, ID token
validation and, when configured, userinfo."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import anyio.to_thread

from keyhall.core.connections import Connection, connection_urls
from keyhall.core.ports import UnitOfWork
from keyhall.core.profiles import map_profile
from keyhall.core.provisioning import LoginRefused, announce_user_created, provision
from keyhall.core.sign_in_traces import TraceNotes
from keyhall.core.transactions import LoginTransaction
from keyhall.core.users import User
from keyhall.core.vocabulary import ConnectionStatus
from keyhall.errors import IdPLoginError, KeyhallError, ServiceUnavailable
from keyhall.idp.oidc_rp import JwksCache, choose_token_auth_method, exchange_code, fetch_userinfo
from keyhall.login import sign_in_test_outcome as outcome
from keyhall.login import traces
from keyhall.login.flow import Authentication, LoginFailed, check_browser, check_trip_pinned, complete
from keyhall.login.identity import check_reauthentication, check_tenant, idp_acr, idp_amr, vouch_email
from keyhall.login.records import (
    Kind,
    OidcTrip,
    Reauthentication,
    SignInTestRecord,
    new_record_transaction,
    timestamp,
)
from keyhall.login.sign_in_test_outcome import sign_in_test_of
from keyhall.login.steps import Redirect
from keyhall.protocols.oidc.id_token import signing_alg, unverified_kid, validate_id_token
from keyhall.protocols.oidc.pkce import new_code_verifier, s256_challenge
from keyhall.security.outbound import OutboundPolicy

T = TypeVar("T")

#: RFC 6749 §4.1.2.1 and OIDC Core §3.1.2.6 error codes: the only callback text that is recorded.
OAUTH_ERRORS = frozenset({
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type", "invalid_scope",
    "server_error", "temporarily_unavailable", "interaction_required", "login_required", "account_selection_required",
    "consent_required", "invalid_request_uri", "invalid_request_object", "request_not_supported",
    "request_uri_not_supported", "registration_not_supported",
})


@dataclass(frozen=True)
class RelyingParty:
    """What the flow needs from the running service."""

    public_url: str
    policy: OutboundPolicy
    jwks_cache: JwksCache
    clock_skew_seconds: int = 60


def _endpoint(conn: Connection, setting: str, discovered: str) -> str | None:
    value = conn.settings.get(setting) or (conn.discovered or {}).get(discovered)
    return str(value) if value else None


def begin(uow: UnitOfWork, rp: RelyingParty, conn: Connection, parent: LoginTransaction, *,
          login_hint: str | None, now: datetime) -> str:
    """The IdP authorization URL; the trip's state, nonce and PKCE verifier stay in the database."""
    authorization_endpoint = _endpoint(conn, "authorization_url", "authorization_endpoint")
    if not authorization_endpoint:
        raise LoginFailed("This organization's sign-in is misconfigured (no authorization endpoint).",
                          reason="connection_misconfigured", connection=conn)
    verifier, nonce = new_code_verifier(), secrets.token_urlsafe(24)
    redirect_uri = str(connection_urls(rp.public_url, conn)["redirect_uri"])
    reauth = Reauthentication.of(parent)
    trip = new_record_transaction(OidcTrip(connection_id=conn.id, nonce=nonce, verifier=verifier,
                                           redirect_uri=redirect_uri, reauth=reauth), now, parent_id=parent.id)
    uow.transactions.add(trip)
    params = {
        "response_type": "code", "client_id": conn.settings["client_id"], "redirect_uri": redirect_uri,
        "scope": conn.settings.get("scope") or "openid profile email", "state": trip.id, "nonce": nonce,
        "code_challenge": s256_challenge(verifier), "code_challenge_method": "S256",
    }
    if login_hint:
        params["login_hint"] = login_hint
    if reauth.force:  # the product's prompt=login and max_age reach the IdP (OIDC Core §3.1.2.1)
        params["prompt"] = "login"
    if reauth.max_age is not None:
        params["max_age"] = str(reauth.max_age)
    separator = "&" if "?" in authorization_endpoint else "?"
    return f"{authorization_endpoint}{separator}{urlencode(params)}"


def take_trip(uow: UnitOfWork, connection_id: str, params: dict[str, str], now: datetime, *,
              browser: str | None) -> LoginTransaction:
    """The stored trip this callback answers; single use. Raises LoginFailed for forged or reused
    state, and for a callback reaching a browser other than the one that started the sign-in
    (``browser``: its login cookie, any text). That check comes first and spends nothing: an
    answer delivered to the wrong browser (a leaked callback URL, a garbled cookie) must not end
    the sign-in it belongs to."""
    state = params.get("state")
    seen = uow.transactions.get(state) if state else None
    record = OidcTrip.maybe_of(seen)
    if (seen is None or record is None or seen.consumed_at is not None or record.connection_id != connection_id
            or seen.parent_id is None):
        raise _state_invalid()
    check_browser(seen.parent_id, browser)
    trip = uow.transactions.consume(seen.id, Kind.OIDC.value, now)
    if trip is None or trip.parent_id != seen.parent_id:
        raise _state_invalid()
    return trip


class Offload(Protocol):
    """Runs a function of the unit of work away from the event loop (a worker thread): the
    database's steps of a callback, between which the IdP is asked from the loop itself."""

    def __call__(self, call: Callable[[], T], /) -> Awaitable[T]: ...


async def _in_thread(call: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(call)


@dataclass(frozen=True)
class _Answered:
    """What a callback brought back, checked against its trip, before the IdP is asked."""

    trip: LoginTransaction
    record: OidcTrip
    conn: Connection
    issuer: str
    code: str


@dataclass(frozen=True)
class _Spent:
    """A callback's trip, spent: its sign-in's test (None for a real sign-in), and the answer
    checked against it, or why it was refused."""

    trip: LoginTransaction
    test: SignInTestRecord | None
    answered: _Answered | None
    refused: LoginFailed | None


async def callback(uow: UnitOfWork, rp: RelyingParty, connection_id: str, params: dict[str, str], *,
                   browser: str | None, issuer: str, now: datetime, request_id: str | None,
                   offload: Offload = _in_thread) -> Redirect:
    """The IdP's answer at ``/sso/{cid}/oidc/callback``: the product's code, or LoginFailed.

    Three steps: the trip is spent and the answer checked against it (in ``offload``); the IdP is
    asked for the tokens, keys and UserInfo from the event loop, with no database transaction open
    and no thread held while it answers; the person is provisioned and the sign-in completed (in
    ``offload``)."""
    notes = TraceNotes()
    spent = await offload(lambda: _spend(uow, connection_id, params, now, browser, notes))
    try:
        if spent.refused is not None:
            raise spent.refused
        assert spent.answered is not None
        claims = await _asked(rp, spent.answered, now, notes)
    except LoginFailed as exc:
        exc.trace_notes = notes
        if spent.test is None:
            raise
        failure = exc
        return await offload(lambda: _test_failed(uow, spent, failure, notes, now, request_id))
    answered = spent.answered
    return await offload(lambda: _finish(uow, rp, spent, answered, claims, issuer, now, notes, request_id))


def _spend(uow: UnitOfWork, connection_id: str, params: dict[str, str], now: datetime, browser: str | None,
           notes: TraceNotes) -> _Spent:
    """Spend the trip (committed before any network call, whatever happens next), then check the
    answer against it. The browser is checked before the state is spent: an answer arriving in
    another browser (or with a garbled cookie) is refused without ending the sign-in it belongs to."""
    trip = take_trip(uow, connection_id, params, now, browser=browser)
    uow.commit()
    parent = uow.transactions.get(trip.parent_id) if trip.parent_id else None
    test = sign_in_test_of(parent)
    try:
        return _Spent(trip, test, _answered(uow, trip, params, notes, parent), None)
    except LoginFailed as exc:
        uow.rollback()
        return _Spent(trip, test, None, exc)


def _finish(uow: UnitOfWork, rp: RelyingParty, spent: _Spent, answered: _Answered, claims: dict[str, Any],
            issuer: str, now: datetime, notes: TraceNotes, request_id: str | None) -> Redirect:
    """Provision the person and complete the sign-in (or its test)."""
    parent_id = str(spent.trip.parent_id)
    try:
        conn, user, authn = _provisioned(uow, rp, answered, claims, now, notes)
    except LoginFailed as exc:
        exc.trace_notes = notes
        if spent.test is None:
            raise
        return _test_failed(uow, spent, exc, notes, now, request_id)
    if spent.test is not None:
        return outcome.succeeded(uow, parent_id, spent.test, conn, user, notes, now=now, request_id=request_id)
    url = complete(uow, parent_id, user, connection=conn, authn=authn, issuer=issuer, now=now, request_id=request_id)
    return Redirect(url, finished=True)


def _test_failed(uow: UnitOfWork, spent: _Spent, exc: LoginFailed, notes: TraceNotes, now: datetime,
                 request_id: str | None) -> Redirect:
    assert spent.test is not None
    return outcome.failed(uow, str(spent.trip.parent_id), spent.test, exc, notes, now=now, request_id=request_id)


def _state_invalid() -> LoginFailed:
    return LoginFailed("This sign-in response is not one Keyhall is waiting for (it may have been used "
                       "already). Go back to your application and start again.", reason="state_invalid")


def _answered(uow: UnitOfWork, trip: LoginTransaction, params: dict[str, str], notes: TraceNotes,
              parent: LoginTransaction | None) -> _Answered:
    """Check what the IdP sent back against the trip and its connection, then end the read
    transaction: on SQLite it would otherwise hold the write lock while the IdP is asked."""
    record = OidcTrip.of(trip)
    conn = uow.connections.get_any(record.connection_id)
    if conn is None or conn.status is not ConnectionStatus.ACTIVE:
        raise LoginFailed("This sign-in method is switched off by your organization.",
                          reason="connection_inactive", connection=conn)
    notes.passed("request_sent", f"OIDC authorization request (code flow, PKCE S256) to "
                                 f"{_endpoint(conn, 'authorization_url', 'authorization_endpoint')}")
    check_trip_pinned(uow, trip, conn, parent=parent)
    if "error" in params:
        # Anyone can put anything in this query: it is shown to the person who sent it, but only a
        # registered error code reaches the organization's audit trail.
        described = params.get("error_description") or params["error"]
        error = params["error"] if params["error"] in OAUTH_ERRORS else "other"
        raise LoginFailed(f"Your organization's sign-in service did not sign you in: {described[:200]}",
                          reason=f"idp_error:{error}", connection=conn, status=403)
    issuer = str(conn.settings.get("issuer") or (conn.discovered or {}).get("issuer") or "")
    if params.get("iss") and params["iss"] != issuer:  # RFC 9207 mix-up defence
        raise LoginFailed("The sign-in response came from an unexpected identity provider.",
                          reason="issuer_mismatch", connection=conn)
    code = params.get("code")
    if not code:
        raise LoginFailed("The sign-in response carried no code.", reason="missing_code", connection=conn)
    notes.passed("idp_response", "a code came back with the state sent" + (" and the expected iss"
                                                                             if params.get("iss") else ""))
    uow.rollback()
    return _Answered(trip, record, conn, issuer, code)


async def _asked(rp: RelyingParty, answered: _Answered, now: datetime, notes: TraceNotes) -> dict[str, Any]:
    """The IdP's claims about the person: the code exchanged, the ID token validated, UserInfo read."""
    try:
        claims = await _tokens_and_claims(rp, answered.conn, answered.record, answered.code, answered.issuer, now,
                                          notes)
    except LoginFailed:
        raise
    except KeyhallError as exc:
        raise _login_failed(exc, answered.conn) from exc
    traces.note_claims(notes, claims)
    return claims


def _provisioned(uow: UnitOfWork, rp: RelyingParty, answered: _Answered, claims: dict[str, Any], now: datetime,
                 notes: TraceNotes) -> tuple[Connection, User, Authentication]:
    """The organization's rules applied to the claims, and the person provisioned."""
    conn = answered.conn
    try:
        check_tenant(conn, claims)
        notes.passed("tenant", "the account's tenant is accepted")
        auth_time = timestamp(claims.get("auth_time"))
        check_reauthentication(answered.record.reauth, auth_time, started=answered.trip.created_at, now=now,
                               skew_seconds=rp.clock_skew_seconds, conn=conn)
        profile = map_profile(conn, claims, subject=str(claims["sub"]))
        idp_vouched = profile.email_verified
        domain_verified = vouch_email(uow, conn, profile, idp_vouched=idp_vouched)
        traces.note_profile(notes, profile, domain_verified=domain_verified, idp_vouched=idp_vouched)
        user, created = provision(uow.users, conn, profile, now)
        traces.note_provisioned(notes, user, created=created)
        if created:
            announce_user_created(uow, user, now)
    except LoginFailed:
        raise
    except KeyhallError as exc:
        raise _login_failed(exc, conn) from exc
    authn = Authentication(amr=idp_amr(claims.get("amr")) or ["ext"], auth_time=auth_time,
                           acr=idp_acr(claims.get("acr")))
    return conn, user, authn


def _login_failed(exc: KeyhallError, conn: Connection) -> LoginFailed:
    """The LoginFailed an error of the IdP's answer or of the organization's rules stands for."""
    if isinstance(exc, LoginRefused):
        return LoginFailed(exc.message, reason=exc.reason, connection=conn, status=403)
    if isinstance(exc, IdPLoginError):
        reason = str(exc.reason)
        if reason == "idp_unreachable":
            return LoginFailed("Keyhall could not reach your organization's identity provider. Try again in a few "
                               "minutes.", reason=reason, connection=conn, detail=exc.message, status=502)
        return LoginFailed("Keyhall could not confirm your sign-in with your organization's identity provider.",
                           reason=reason, connection=conn, detail=exc.message)
    # Busy (the per-IdP cap) or unreachable is the service's state, not the person's mistake.
    status = 503 if isinstance(exc, ServiceUnavailable) else 400
    return LoginFailed("Keyhall could not reach your organization's identity provider. Try again in a few "
                       "minutes.", reason=exc.code, connection=conn, detail=exc.message, status=status)


async def _tokens_and_claims(rp: RelyingParty, conn: Connection, trip: OidcTrip, code: str, issuer: str,
                             now: datetime, notes: TraceNotes) -> dict[str, Any]:
    discovered = conn.discovered or {}
    token_endpoint = _endpoint(conn, "token_url", "token_endpoint")
    jwks_uri = _endpoint(conn, "jwks_url", "jwks_uri")
    if not token_endpoint or not jwks_uri:
        raise IdPLoginError("no token endpoint or JWKS for this connection", reason="bad_token_response")
    secret = conn.secrets.get("client_secret")
    method = choose_token_auth_method(discovered.get("token_endpoint_auth_methods_supported"),
                                      conn.settings.get("token_endpoint_auth_method"), secret is not None)
    tokens = await exchange_code(token_endpoint=token_endpoint, code=code, redirect_uri=trip.redirect_uri,
                                 code_verifier=trip.verifier, client_id=str(conn.settings["client_id"]),
                                 client_secret=secret, auth_method=method, policy=rp.policy)
    if not tokens.id_token:
        raise IdPLoginError("the token response had no id_token", reason="bad_token_response")
    notes.passed("token_call", f"code exchanged at {token_endpoint} ({method})")
    jwks = await rp.jwks_cache.get(jwks_uri, rp.policy, kid=unverified_kid(tokens.id_token))
    claims = validate_id_token(tokens.id_token, jwks=jwks, issuer=issuer, client_id=str(conn.settings["client_id"]),
                               nonce=trip.nonce, now=now, leeway_seconds=rp.clock_skew_seconds)
    _note_id_token(notes, signing_alg(tokens.id_token), jwks_uri, claims, rp.clock_skew_seconds)
    userinfo_endpoint = _endpoint(conn, "userinfo_url", "userinfo_endpoint")
    if conn.settings.get("fetch_userinfo", True) and userinfo_endpoint and tokens.access_token:
        # OIDC Core §5.3.2: the userinfo subject must match the ID token's, or the response is not used.
        info = await fetch_userinfo(userinfo_endpoint=userinfo_endpoint, access_token=tokens.access_token,
                                    policy=rp.policy, expected_sub=str(claims["sub"]))
        protected = {"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "auth_time", "at_hash", "c_hash"}
        claims = {**claims, **{k: v for k, v in info.items() if k not in protected}}
    return claims


def _note_id_token(notes: TraceNotes, alg: str | None, jwks_uri: str, claims: dict[str, Any], skew: int) -> None:
    notes.passed("id_token_signature", f"{alg} signature verified with a key from {jwks_uri}")
    notes.passed("issuer", f"iss is {claims.get('iss')}")
    aud = claims.get("aud")
    notes.passed("audience", f"aud {', '.join(aud) if isinstance(aud, list) else aud} includes this connection's "
                             f"client id")
    notes.passed("nonce", "the nonce matches the one sent")
    exp = timestamp(claims.get("exp"))
    notes.passed("expiry", f"valid until {exp.isoformat() if exp else '?'}; clock skew allowed {skew} s")
