"""Authorization codes, token issuance and refresh-token rotation (RFC 6749 §4.1, §6, §10.4;
OIDC Core §3.1.3, §12; RFC 7636 §4.6; OAuth 2.0 Security BCP §4.14 refresh token rotation).

A redeemed code starts a token family (``provider.sessions``): the refresh tokens rotated from it,
and ID and access tokens that carry its id as ``sid`` (access tokens in place of any user id). Each
refresh re-checks that the sign-in still stands and never extends it past the family's absolute
lifetime."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyhall.core.applications import Application
from keyhall.core.organizations import Organization
from keyhall.core.ports import UnitOfWork
from keyhall.core.tokens import AuthorizationCode, RefreshToken, SamlSubject, TokenFamily
from keyhall.core.users import User
from keyhall.protocols.oidc.pkce import verify_s256
from keyhall.provider.authorize import AuthorizeRequest
from keyhall.provider.claims import subject_for, user_claims
from keyhall.provider.sessions import DEFAULT_MAX_LIFETIME, SessionEnded, check_session, family_end
from keyhall.provider.signing import MAX_TOKEN_LIFETIME, active_keys, sign
from keyhall.security.api_keys import secret_matches

CODE_TTL = timedelta(seconds=60)
TOKEN_TTL = MAX_TOKEN_LIFETIME
#: Access tokens (RFC 9068 JWTs, verifiable with the JWKS) are signed with the ES256 key whatever
#: the application's ID token algorithm: a P-256 signature costs a few hundredths of a millisecond,
#: an RSA-2048 one about a millisecond, and only Keyhall itself needs to read an access token
#: (userinfo, revocation); the ID token keeps the algorithm the application registered.
ACCESS_TOKEN_ALG = "ES256"
REFRESH_TTL = timedelta(days=30)  # sliding: each rotation starts a new one, within the family's absolute lifetime


class TokenError(Exception):
    def __init__(self, error: str, description: str, *, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def authenticate_client(app: Application | None, secret: str | None, *, method_used: str) -> Application:
    """RFC 6749 §2.3: confidential clients prove their secret; public ones send none."""
    if app is None:
        raise TokenError("invalid_client", "unknown client", status=401)
    if app.public:
        if secret:
            raise TokenError("invalid_client", "public clients have no secret", status=401)
        return app
    if method_used == "none" or not secret or app.secret_hash is None or not secret_matches(secret, app.secret_hash):
        raise TokenError("invalid_client", "client authentication failed", status=401)
    return app


def issue_code(uow: UnitOfWork, request: AuthorizeRequest, user: User, *, connection_id: str | None,
               amr: list[str], now: datetime, auth_time: datetime | None = None, acr: str | None = None,
               saml_subject: SamlSubject | None = None) -> str:
    """``auth_time``: when the IdP authenticated the person (default: now); ``acr``: its context class;
    ``saml_subject``: the NameID/SessionIndex of a SAML sign-in, kept with the session it begins."""
    code = secrets.token_urlsafe(32)
    uow.grants.add_code(AuthorizationCode(
        code_hash=_hash(code), client_id=request.client_id, user_id=user.id, created_at=now,
        expires_at=now + CODE_TTL,
        grant={"scope": request.scope, "nonce": request.nonce, "redirect_uri": request.redirect_uri,
               "code_challenge": request.code_challenge, "connection_id": connection_id,
               "auth_time": int((auth_time or now).timestamp()), "amr": amr, "acr": acr,
               # the family (``sid``) its redemption will start, named now: a replayed code finds it
               # here, with no write of the code at redemption
               "family_id": str(uuid.uuid4()),
               **({"saml_subject": saml_subject.to_dict()} if saml_subject else {})},
    ))
    return code


@dataclass(frozen=True)
class Issuer:
    url: str
    alg: str = "RS256"


def _mint(uow: UnitOfWork, app: Application, user: User, org: Organization, grant: dict[str, Any],
          issuer: str, now: datetime, *, family_id: str, refresh_until: datetime, with_nonce: bool) -> dict[str, Any]:
    keys = active_keys(uow.signing_keys, (app.id_token_alg, ACCESS_TOKEN_ALG), now)
    key, access_key = keys[app.id_token_alg], keys[ACCESS_TOKEN_ALG]
    sub = subject_for(app.id, user.id)
    iat, exp = int(now.timestamp()), int((now + TOKEN_TTL).timestamp())
    claims = user_claims(user, org, grant["scope"], grant.get("connection_id"))
    id_claims = {"iss": issuer, "sub": sub, "aud": app.id, "azp": app.id, "iat": iat, "exp": exp,
                 "auth_time": grant["auth_time"], "amr": grant.get("amr") or [], "sid": family_id, **claims}
    if grant.get("acr"):
        id_claims["acr"] = grant["acr"]
    if with_nonce and grant.get("nonce"):
        id_claims["nonce"] = grant["nonce"]
    access_claims = {"iss": issuer, "sub": sub, "aud": app.id, "client_id": app.id, "iat": iat, "exp": exp,
                     "jti": str(uuid.uuid4()), "scope": grant["scope"], "sid": family_id}
    refresh = secrets.token_urlsafe(48)
    uow.grants.add_refresh(RefreshToken(
        token_hash=_hash(refresh), family_id=family_id, client_id=app.id, user_id=user.id,
        grant={k: v for k, v in grant.items() if k not in ("nonce", "family_id")}, created_at=now,
        expires_at=min(now + REFRESH_TTL, refresh_until),
    ))
    return {"access_token": sign(access_key, access_claims, typ="at+jwt"), "token_type": "Bearer",
            "expires_in": int(TOKEN_TTL.total_seconds()), "id_token": sign(key, id_claims),
            "refresh_token": refresh, "scope": grant["scope"]}


def _session(uow: UnitOfWork, family: TokenFamily | None, now: datetime,
             max_lifetime: timedelta) -> tuple[User, Organization]:
    try:
        return check_session(uow, family, now, max_lifetime=max_lifetime)
    except SessionEnded as exc:
        raise TokenError("invalid_grant", exc.description) from exc


def exchange_code(uow: UnitOfWork, app: Application, *, code: str | None, redirect_uri: str | None,
                  code_verifier: str | None, issuer: str, now: datetime,
                  max_lifetime: timedelta = DEFAULT_MAX_LIFETIME) -> dict[str, Any]:
    if not code:
        raise TokenError("invalid_request", "code is required")
    stored, first_use = uow.grants.use_code(_hash(code), now)
    if stored is None:
        raise TokenError("invalid_grant", "unknown authorization code")
    if not first_use:
        family = stored.grant.get("family_id")
        if family:  # RFC 6749 §4.1.2: a replayed code revokes what it produced
            uow.grants.revoke_family(str(family), now)
        uow.commit()
        raise TokenError("invalid_grant", "authorization code already used")
    try:
        return _redeem_code(uow, app, stored, redirect_uri=redirect_uri, code_verifier=code_verifier,
                            issuer=issuer, now=now, max_lifetime=max_lifetime)
    except TokenError:
        uow.commit()  # the code stays used: one attempt per code, whatever its outcome
        raise


def _redeem_code(uow: UnitOfWork, app: Application, stored: AuthorizationCode, *,
                 redirect_uri: str | None, code_verifier: str | None, issuer: str, now: datetime,
                 max_lifetime: timedelta) -> dict[str, Any]:
    if stored.expires_at <= now:
        raise TokenError("invalid_grant", "authorization code expired")
    if stored.client_id != app.id:
        raise TokenError("invalid_grant", "authorization code was issued to another client")
    if redirect_uri != stored.grant.get("redirect_uri"):
        raise TokenError("invalid_grant", "redirect_uri does not match the authorization request")
    challenge = stored.grant.get("code_challenge")
    if challenge:
        if not code_verifier or not verify_s256(code_verifier, challenge):
            raise TokenError("invalid_grant", "code_verifier does not match the code_challenge")
    elif code_verifier:
        raise TokenError("invalid_grant", "code_verifier sent but no code_challenge was")
    named = stored.grant.get("family_id")  # codes issued before the family was named at issuance have none
    family = TokenFamily(id=str(named or uuid.uuid4()), client_id=app.id, user_id=stored.user_id,
                         connection_id=stored.grant.get("connection_id"), amr=list(stored.grant.get("amr") or []),
                         created_at=now)
    user, org = _session(uow, family, now, max_lifetime)
    uow.grants.add_family(family)
    if (saml_subject := SamlSubject.from_dict(stored.grant.get("saml_subject"))) is not None:
        uow.saml_sessions.add(family.id, saml_subject, now)
    response = _mint(uow, app, user, org, stored.grant, issuer, now, family_id=family.id,
                     refresh_until=family_end(family, max_lifetime), with_nonce=True)
    if not named:
        uow.grants.note_code_family(stored.code_hash, family.id)
    uow.commit()
    return response


def refresh(uow: UnitOfWork, app: Application, *, refresh_token: str | None, scope: str | None,
            issuer: str, now: datetime, max_lifetime: timedelta = DEFAULT_MAX_LIFETIME) -> dict[str, Any]:
    if not refresh_token:
        raise TokenError("invalid_request", "refresh_token is required")
    stored, first_use = uow.grants.use_refresh(_hash(refresh_token), now)
    if stored is None:
        raise TokenError("invalid_grant", "unknown refresh token")
    if not first_use:
        # Reuse of a rotated (or revoked) token: assume theft and end the whole lineage.
        uow.grants.revoke_family(stored.family_id, now)
        uow.commit()
        raise TokenError("invalid_grant", "refresh token already used; the session has been revoked")
    try:
        return _redeem_refresh(uow, app, stored, scope=scope, issuer=issuer, now=now, max_lifetime=max_lifetime)
    except TokenError:
        uow.commit()
        raise


def _redeem_refresh(uow: UnitOfWork, app: Application, stored: RefreshToken, *, scope: str | None,
                    issuer: str, now: datetime, max_lifetime: timedelta) -> dict[str, Any]:
    if stored.client_id != app.id:
        raise TokenError("invalid_grant", "refresh token was issued to another client")
    family = uow.grants.family(stored.family_id)
    try:
        user, org = _session(uow, family, now, max_lifetime)
    except TokenError:
        # Every refresh re-checks the sign-in; once it no longer stands, its whole family ends.
        uow.grants.revoke_family(stored.family_id, now)
        raise
    assert family is not None
    if stored.expires_at <= now:
        raise TokenError("invalid_grant", "refresh token expired")
    grant = dict(stored.grant)
    if scope:
        wanted = scope.split()
        if not set(wanted) <= set(grant["scope"].split()):
            raise TokenError("invalid_scope", "a refresh cannot widen the granted scope")
        grant["scope"] = " ".join(wanted)
    response = _mint(uow, app, user, org, grant, issuer, now, family_id=family.id,
                     refresh_until=family_end(family, max_lifetime), with_nonce=False)
    uow.commit()
    return response
