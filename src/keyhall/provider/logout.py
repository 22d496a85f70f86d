"""RP-Initiated Logout (OpenID Connect RP-Initiated Logout 1.0) at ``/oauth2/logout``.

- §2 ``id_token_hint``: an ID token Keyhall signed (signature against a published key, ``iss``,
  ``typ`` JWT), accepted after its ``exp`` (the spec says the OP SHOULD, as products keep the token
  of a sign-in that may be hours old). Its ``aud`` names the product and its ``sid`` the session
  to end; the session ends only when it is that product's and that person's (pairwise ``sub``).
  A hint Keyhall cannot verify — forged, from another issuer, an access token — refuses the request
  and ends nothing.
- §2 ``client_id``: names the product when no hint does; when both are sent they must agree.
- §3 ``post_logout_redirect_uri``: followed only when it exactly matches one the product
  registered (``post_logout_redirect_uris``), and only when the product is known from the hint or
  ``client_id``; ``state`` is passed back on it. Anything else is refused and shown, never
  redirected: Keyhall is not an open redirector. Without one, the person sees a plain page.

Keyhall keeps no browser session of its own (``core.sessions``), so a logout without an
``id_token_hint`` has no session to end: the person sees the signed-out page, nothing else happens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from keyhall.core.applications import Application
from keyhall.core.ports import UnitOfWork
from keyhall.core.sessions import LiveSession, end_sessions
from keyhall.provider import signing
from keyhall.provider.authorize import add_query
from keyhall.provider.claims import subject_for

PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales")
MAX_PARAM = 8192  # an ID token with many groups is long; nothing else comes close
MAX_PARAMS = 16


class LogoutRefused(Exception):
    """The request is refused and shown to the person; nothing was ended and nowhere redirected."""

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class LogoutOutcome:
    redirect_to: str | None  # the registered post-logout redirect URI with ``state``, or None: show the page
    ended: int  # sessions ended
    application: str | None  # the product's name, for the page
    sessions: tuple[LiveSession, ...] = ()  # the sessions ended (a SAML sign-in's may be logged out at its IdP)


def _check_size(params: Mapping[str, str]) -> None:
    if len(params) > MAX_PARAMS:
        raise LogoutRefused(f"too many parameters (at most {MAX_PARAMS})")
    for name, value in params.items():
        if len(value) > MAX_PARAM:
            raise LogoutRefused(f"{name[:64]} is too long (at most {MAX_PARAM} characters)")


def verify_id_token_hint(uow: UnitOfWork, token: str, *, issuer: str, now: datetime) -> dict[str, object]:
    """The claims of an ID token Keyhall issued, expired or not; raises ``LogoutRefused``."""
    claims = signing.verify(token, uow.signing_keys, now, typ="JWT", allow_expired=True)
    if claims is None or claims.get("iss") != issuer:
        raise LogoutRefused("id_token_hint is not an ID token issued by this service")
    if not isinstance(claims.get("aud"), str) or not isinstance(claims.get("sub"), str):
        raise LogoutRefused("id_token_hint is not an ID token issued by this service")
    return claims


def _application(uow: UnitOfWork, hint: Mapping[str, object] | None,
                 client_id: str | None) -> Application | None:
    named = str(hint["aud"]) if hint is not None else None
    if client_id is not None and named is not None and client_id != named:
        raise LogoutRefused("client_id does not match the audience of id_token_hint")
    wanted = named or client_id
    if wanted is None:
        return None
    app = uow.applications.get(wanted[:64])
    if app is None:
        raise LogoutRefused("unknown client_id")
    return app


def _redirect(app: Application | None, uri: str | None, state: str | None) -> str | None:
    if uri is None:
        return None
    if app is None:
        raise LogoutRefused("post_logout_redirect_uri needs id_token_hint or client_id to name the application")
    if uri not in app.post_logout_redirect_uris:  # exact match, no pattern, no prefix
        raise LogoutRefused("post_logout_redirect_uri is not registered for this application")
    return add_query(uri, {"state": state})


def logout(uow: UnitOfWork, params: Mapping[str, str], *, issuer: str, now: datetime,
           request_id: str | None) -> LogoutOutcome:
    """Check the request, end the session the hint names, commit; raises ``LogoutRefused``."""
    _check_size(params)
    token = params.get("id_token_hint") or None
    hint = verify_id_token_hint(uow, token, issuer=issuer, now=now) if token else None
    app = _application(uow, hint, params.get("client_id") or None)
    redirect_to = _redirect(app, params.get("post_logout_redirect_uri") or None, params.get("state") or None)
    ended = 0
    sessions: list[LiveSession] = []
    sid = hint.get("sid") if hint is not None else None
    if hint is not None and app is not None and isinstance(sid, str):
        sessions = [s for s in uow.session_ends.live(session_ids=[sid])
                    if s.client_id == app.id and subject_for(app.id, s.user_id) == hint["sub"]]
        for session in sessions:  # one at most: a sid names one session
            ended += end_sessions(uow, [session], now, reason="logout", actor=f"user:{session.user_id}",
                                  request_id=request_id)
        uow.commit()
    return LogoutOutcome(redirect_to=redirect_to, ended=ended, application=app.name if app else None,
                         sessions=tuple(sessions) if ended else ())
