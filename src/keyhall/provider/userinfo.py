"""The UserInfo endpoint's answer (OIDC Core §5.3) for a bearer access token (RFC 6750, RFC 9068).

The access token names no user: it carries its family's id (``sid``), and the family says whose
sign-in it is. That keeps Keyhall's internal user id out of the product's hands (the pairwise
``sub`` would be undone by it) and puts every userinfo call through the same checks as a refresh
(``provider.sessions``), plus the list of individually revoked access tokens (RFC 7009).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from keyhall.core.ports import UnitOfWork
from keyhall.provider import signing
from keyhall.provider.claims import subject_for, user_claims
from keyhall.provider.sessions import SessionEnded, check_session


class InvalidAccessToken(Exception):
    """RFC 6750 §3.1 ``invalid_token``: the token is not (or no longer) good for userinfo."""


def userinfo_claims(uow: UnitOfWork, token: str, *, issuer: str, now: datetime,
                    max_lifetime: timedelta) -> dict[str, Any]:
    claims = signing.verify(token, uow.signing_keys, now, typ="at+jwt") if token else None
    if claims is None or claims.get("iss") != issuer:
        raise InvalidAccessToken("the access token is not valid")
    sid, jti, client_id = claims.get("sid"), claims.get("jti"), claims.get("client_id")
    if not isinstance(sid, str) or not isinstance(jti, str) or not isinstance(client_id, str):
        raise InvalidAccessToken("the access token does not name its sign-in")
    if uow.grants.access_token_revoked(jti):
        raise InvalidAccessToken("the access token has been revoked")
    family = uow.grants.family(sid)
    if family is None or family.client_id != client_id:
        raise InvalidAccessToken("the sign-in is unknown")
    try:
        user, org = check_session(uow, family, now, max_lifetime=max_lifetime)
    except SessionEnded as exc:
        raise InvalidAccessToken(exc.description) from exc
    sub = subject_for(family.client_id, user.id)
    if claims.get("sub") != sub:
        raise InvalidAccessToken("the access token is not for this sign-in")
    body = {"sub": sub, **user_claims(user, org, str(claims.get("scope", "")), None)}
    body.pop("connection_id", None)
    if user.connection_id:
        body["connection_id"] = user.connection_id
    return body
