"""The setup portal's entrance and what its pages share: opening a link (which starts the portal
session and takes the token out of the URL), the session cookie, the CSRF check on every form, the
portal's pages and error pages, and the one small script (copy buttons).

The rules live in ``keyhall.core.portal``; the areas' pages are ``web.portal_sso`` (connections)
and ``web.portal_setup`` (domains, directories, certificates).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.http import request_id, status_for
from keyhall.core import portal
from keyhall.core.connection_service import Context
from keyhall.core.portal import AREAS, Area, PortalSession
from keyhall.core.ports import UnitOfWork
from keyhall.errors import KeyhallError, NotFound
from keyhall.runtime import Runtime
from keyhall.web.rendering import page

router = APIRouter(prefix=portal.PORTAL_PATH, tags=["portal"], include_in_schema=False)

COOKIE = "keyhall_portal"
CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
AREA_TITLES = {Area.CONNECTIONS: "Single sign-on", Area.DOMAINS: "Domains", Area.DIRECTORIES: "Directory sync",
               Area.CERTIFICATES: "Certificates"}
MAX_FIELDS = 64
COPY_SCRIPT = (Path(__file__).parent / "static" / "portal-copy.js").read_text(encoding="utf-8")


async def form_fields(request: Request) -> dict[str, str]:
    """A posted form's text fields (files are refused; the body limit bounds the size)."""
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    return {name: value for name, value in form.items() if isinstance(value, str)}


FormDep = Annotated[dict[str, str], Depends(form_fields)]


def area_url(area: Area) -> str:
    return f"{portal.PORTAL_PATH}/{area.value}"


def render(template: str, session: PortalSession, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A portal page: its navigation (the areas the link opens), the session's CSRF token, and the
    way back to the product when the link named one."""
    nav = [(AREA_TITLES[a], area_url(a)) for a in AREAS[session.intent]]
    response = page(template, status=status, csp=CSP, csrf=session.csrf_token, nav=nav,
                    return_url=session.return_url, **context)
    # Browsers send "Origin: null" from a no-referrer page; same-origin lets the form's real origin
    # be checked, and still tells other sites nothing.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(exc: KeyhallError) -> HTMLResponse:
    status = status_for(exc)
    reason = exc.details.get("reason")
    if isinstance(exc, NotFound) and reason in ("used", "expired"):
        status = 410
    heading = {403: "Setup session needed", 404: "Not found", 410: "This link no longer works"}.get(
        status, "Something needs attention")
    return page("portal_error.html", status=status, csp=CSP, title=heading, heading=heading, message=exc.message,
                nav=[], return_url=None, csrf=None)


def current(request: Request, uow: UnitOfWork, runtime: Runtime) -> PortalSession:
    return portal.current_session(portal.store_of(uow), request.cookies.get(COOKIE), runtime.clock())


def guarded(request: Request, uow: UnitOfWork, runtime: Runtime, area: Area,
            build: Callable[[PortalSession], Response], *, form: dict[str, str] | None = None) -> Response:
    """Find the session, check it may see ``area`` (and, for a form, its CSRF token and Origin),
    then build the page; a refusal is the portal's error page."""
    try:
        session = current(request, uow, runtime)
        portal.require_area(session, area)
        if form is not None:
            portal.check_csrf(session, form.get("csrf"), origin=request.headers.get("origin"),
                              public_url=runtime.settings.public_url)
        return build(session)
    except KeyhallError as exc:
        return error_page(exc)


def context_of(request: Request, runtime: Runtime, session: PortalSession) -> Context:
    return portal.context_for(session, request_id=request_id(request), now=runtime.clock())


@router.get("/open/{token}")
def open_link(token: str, request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    """Use the link and start the session; the token leaves the address bar at once."""
    settings = runtime.settings
    try:
        opened = portal.open_link(uow, portal.store_of(uow), token, now=runtime.clock(), request_id=request_id(request),
                                  ttl=timedelta(seconds=settings.portal_session_ttl_seconds))
    except KeyhallError as exc:
        return error_page(exc)
    response = RedirectResponse(area_url(AREAS[opened.session.intent][0]), status_code=303)
    response.set_cookie(COOKIE, opened.secret, max_age=settings.portal_session_ttl_seconds, httponly=True,
                        samesite="lax", secure=settings.public_url.startswith("https://"), path=portal.PORTAL_PATH)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("")
@router.get("/")
def home(request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    try:
        session = current(request, uow, runtime)
    except KeyhallError as exc:
        return error_page(exc)
    return RedirectResponse(area_url(AREAS[session.intent][0]), status_code=303)


@router.get("/static/copy.js")
def copy_script() -> Response:
    return Response(COPY_SCRIPT, media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
