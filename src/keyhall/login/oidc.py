"""Keyhall as an OpenID Connect relying party toward an organization's IdP (OIDC Core §3.1):
authorization request with ``state``, ``nonce`` and PKCE; callback with code exchange, ID token
validation and, when configured, userinfo."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

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
from keyhall.login.records import Kind, OidcTrip, Reauthentication, new_record_transaction, timestamp
from keyhall.login.sign_in_test_outcome import sign_in_test_of
from keyhall.login.steps import Redirect
from keyhall.protocols.oidc.id_token import signing_alg, unverified_kid, validate_id_token
from keyhall.protocols.oidc.pkce import new_code_verifier, s256_challenge
from keyhall.security.outbound import OutboundPolicy

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


def callback(uow: UnitOfWork, rp: RelyingParty, connection_id: str, params: dict[str, str], *,
             browser: str | None, issuer: str, now: datetime, request_id: str | None) -> Redirect:
    """The IdP's answer at ``/sso/{cid}/oidc/callback``: the product's code, or LoginFailed."""
    # The browser is checked before the state is spent: an answer arriving in another browser
    # (or with a garbled cookie) is refused without ending the sign-in it belongs to.
    trip = take_trip(uow, connection_id, params, now, browser=browser)
    uow.commit()  # the state is spent before any network call, whatever happens next
    notes = TraceNotes()
    parent = uow.transactions.get(trip.parent_id) if trip.parent_id else None
    test = sign_in_test_of(parent)
    try:
        conn, user, authn = finish(uow, rp, trip, params, now, notes=notes, parent=parent)
    except LoginFailed as exc:
        exc.trace_notes = notes
        if test is None:
            raise
        return outcome.failed(uow, str(trip.parent_id), test, exc, notes, now=now, request_id=request_id)
    if test is not None:
        return outcome.succeeded(uow, str(trip.parent_id), test, conn, user, notes, now=now, request_id=request_id)
    url = complete(uow, str(trip.parent_id), user, connection=conn, authn=authn, issuer=issuer, now=now,
                   request_id=request_id)
    return Redirect(url, finished=True)


def _state_invalid() -> LoginFailed:
    return LoginFailed("This sign-in response is not one Keyhall is waiting for (it may have been used "
                       "already). Go back to your application and start again.", reason="state_invalid")


def finish(uow: UnitOfWork, rp: RelyingParty, trip: LoginTransaction, params: dict[str, str],
           now: datetime, *, notes: TraceNotes | None = None,
           parent: LoginTransaction | None = None) -> tuple[Connection, User, Authentication]:
    """Validate what the IdP sent back and provision the person. Network calls happen here, outside
    any database transaction the caller holds open. ``notes`` records how each check passed;
    ``parent``: the trip's sign-in, when the caller has read it already."""
    record = OidcTrip.of(trip)
    conn = uow.connections.get_any(record.connection_id)
    if conn is None or conn.status is not ConnectionStatus.ACTIVE:
        raise LoginFailed("This sign-in method is switched off by your organization.",
                          reason="connection_inactive", connection=conn)
    if notes is not None:
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
    if notes is not None:
        notes.passed("idp_response", "a code came back with the state sent" + (" and the expected iss"
                                                                                 if params.get("iss") else ""))
    # End the read transaction before talking to the IdP: on SQLite it would hold the write lock
    # for the whole round trip.
    uow.rollback()
    try:
        claims = _tokens_and_claims(rp, conn, record, code, issuer, now, notes)
        traces.note_claims(notes, claims)
        check_tenant(conn, claims)
        if notes is not None:
            notes.passed("tenant", "the account's tenant is accepted")
        auth_time = timestamp(claims.get("auth_time"))
        check_reauthentication(record.reauth, auth_time, started=trip.created_at, now=now,
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
    except LoginRefused as exc:
        raise LoginFailed(exc.message, reason=exc.reason, connection=conn, status=403) from exc
    except IdPLoginError as exc:
        reason = str(exc.reason)
        if reason == "idp_unreachable":
            raise LoginFailed("Keyhall could not reach your organization's identity provider. Try again in a few "
                              "minutes.", reason=reason, connection=conn, detail=exc.message, status=502) from exc
        raise LoginFailed("Keyhall could not confirm your sign-in with your organization's identity provider.",
                          reason=reason, connection=conn, detail=exc.message) from exc
    except KeyhallError as exc:
        # Busy (the per-IdP cap) or unreachable is the service's state, not the person's mistake.
        status = 503 if isinstance(exc, ServiceUnavailable) else 400
        raise LoginFailed("Keyhall could not reach your organization's identity provider. Try again in a few "
                          "minutes.", reason=exc.code, connection=conn, detail=exc.message, status=status) from exc
    authn = Authentication(amr=idp_amr(claims.get("amr")) or ["ext"], auth_time=auth_time,
                           acr=idp_acr(claims.get("acr")))
    return conn, user, authn


def _tokens_and_claims(rp: RelyingParty, conn: Connection, trip: OidcTrip, code: str, issuer: str,
                       now: datetime, notes: TraceNotes | None = None) -> dict[str, Any]:
    discovered = conn.discovered or {}
    token_endpoint = _endpoint(conn, "token_url", "token_endpoint")
    jwks_uri = _endpoint(conn, "jwks_url", "jwks_uri")
    if not token_endpoint or not jwks_uri:
        raise IdPLoginError("no token endpoint or JWKS for this connection", reason="bad_token_response")
    secret = conn.secrets.get("client_secret")
    method = choose_token_auth_method(discovered.get("token_endpoint_auth_methods_supported"),
                                      conn.settings.get("token_endpoint_auth_method"), secret is not None)
    tokens = exchange_code(token_endpoint=token_endpoint, code=code, redirect_uri=trip.redirect_uri,
                           code_verifier=trip.verifier, client_id=str(conn.settings["client_id"]),
                           client_secret=secret, auth_method=method, policy=rp.policy)
    if not tokens.id_token:
        raise IdPLoginError("the token response had no id_token", reason="bad_token_response")
    if notes is not None:
        notes.passed("token_call", f"code exchanged at {token_endpoint} ({method})")
    jwks = rp.jwks_cache.get(jwks_uri, rp.policy, kid=unverified_kid(tokens.id_token))
    claims = validate_id_token(tokens.id_token, jwks=jwks, issuer=issuer, client_id=str(conn.settings["client_id"]),
                               nonce=trip.nonce, now=now, leeway_seconds=rp.clock_skew_seconds)
    if notes is not None:
        _note_id_token(notes, signing_alg(tokens.id_token), jwks_uri, claims, rp.clock_skew_seconds)
    userinfo_endpoint = _endpoint(conn, "userinfo_url", "userinfo_endpoint")
    if conn.settings.get("fetch_userinfo", True) and userinfo_endpoint and tokens.access_token:
        # OIDC Core §5.3.2: the userinfo subject must match the ID token's, or the response is not used.
        info = fetch_userinfo(userinfo_endpoint=userinfo_endpoint, access_token=tokens.access_token,
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
