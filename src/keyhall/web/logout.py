"""``/oauth2/logout``: OpenID Connect RP-Initiated Logout 1.0 (§2: GET or form POST).

Parses the request, makes one call into ``keyhall.provider.logout`` and renders its answer: a 303 to
the registered post-logout redirect URI, the signed-out page, or (refused) an error page that
redirects nowhere."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from keyhall.api.deps import RuntimeDep
from keyhall.api.http import request_id
from keyhall.login import saml_logout
from keyhall.login.saml import service_provider
from keyhall.provider import logout as rp_logout
from keyhall.web.rendering import login_error_page, page

router = APIRouter(tags=["openid provider"], include_in_schema=False)  # a browser endpoint, as the pages

_FORM = "application/x-www-form-urlencoded"


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _refused(description: str) -> Response:
    return login_error_page("This sign-out request cannot be completed", description, status=400)


def _logout_sync(request: Request, runtime: Any, params: dict[str, str]) -> Response:
    if any(_has_control(k) or _has_control(v) for k, v in params.items()):
        return _refused("The sign-out request is malformed.")
    with runtime.database.unit_of_work() as uow:
        try:
            outcome = rp_logout.logout(uow, params, issuer=runtime.settings.public_url, now=runtime.clock(),
                                       request_id=request_id(request))
        except rp_logout.LogoutRefused as exc:
            return _refused(exc.description)
        # A session begun by a SAML sign-in is also logged out at its IdP when the connection knows
        # the IdP's SLO URL; the IdP's answer comes back to /sso/{cid}/saml/slo, which continues here.
        to_idp = saml_logout.send_logout_request(
            uow, service_provider(runtime.settings), outcome.sessions, continue_to=outcome.redirect_to,
            application=outcome.application, now=runtime.clock()) if outcome.sessions else None
    if to_idp is not None:
        return RedirectResponse(to_idp, status_code=303, headers={"Cache-Control": "no-store"})
    if outcome.redirect_to is not None:
        return RedirectResponse(outcome.redirect_to, status_code=303, headers={"Cache-Control": "no-store"})
    return page("signed_out.html", title="Signed out", application=outcome.application)


@router.get("/oauth2/logout")
async def logout_get(request: Request, runtime: RuntimeDep) -> Response:
    return await run_in_threadpool(_logout_sync, request, runtime, dict(request.query_params.items()))


@router.post("/oauth2/logout")
async def logout_post(request: Request, runtime: RuntimeDep) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != _FORM:
        return _refused(f"Send the sign-out request as a link or as a form ({_FORM}).")
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    return await run_in_threadpool(_logout_sync, request, runtime, params)
