"""What the hosted pages and the sign-in endpoints share: rendering a page (with its security
headers), the error page, the browser's login cookie, and turning a login step into a response.

The handlers (``web.pages``, ``web.saml``, ``/oauth2/authorize``) parse, make one call into
``keyhall.login`` and hand its answer to ``answer``/``render``; nothing here decides a sign-in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from keyhall.api.http import request_id
from keyhall.core.ports import UnitOfWork
from keyhall.login import flow
from keyhall.login.entry import SignInServices
from keyhall.login.flow import LoginFailed
from keyhall.login.steps import (
    AskEmail,
    ChooseConnection,
    LdapForm,
    PasswordForm,
    Redirect,
    Refused,
    Step,
    TooManyAttempts,
)

LOGIN_COOKIE = "keyhall_login"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; frame-ancestors 'none'; "
       "base-uri 'none'")

_templates = Environment(loader=PackageLoader("keyhall", "web/templates"), autoescape=select_autoescape(["html"]))


def page(template: str, status: int = 200, *, csp: str = CSP, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": csp, "X-Frame-Options": "DENY", "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
    })


def login_error_page(heading: str, message: str, *, status: int = 400, reference: str | None = None) -> HTMLResponse:
    return page("error.html", status=status, title=heading, heading=heading, message=message, reference=reference)


def set_login_cookie(response: Response, tx_id: str, public_url: str) -> None:
    response.set_cookie(LOGIN_COOKIE, tx_id, max_age=900, httponly=True, samesite="lax",
                        secure=public_url.startswith("https://"), path="/")


def login_cookie(request: Request) -> str | None:
    return request.cookies.get(LOGIN_COOKIE)


def render(step: Step) -> Response:
    """The response for one login step."""
    match step:
        case Redirect(url=url, finished=finished):
            response: Response = RedirectResponse(url, status_code=303)
            if finished:
                response.delete_cookie(LOGIN_COOKIE, path="/")
            return response
        case ChooseConnection(choices=choices, password_url=password_url):
            return page("choose.html", title="Choose how to sign in", choices=choices, password=password_url)
        case AskEmail():
            return page("email.html", status=step.status, title="Sign in", tx=step.tx_id, csrf=step.csrf,
                        email=step.email, message=step.message)
        case PasswordForm():
            return page("password.html", status=step.status, title="Sign in", tx=step.tx_id, csrf=step.csrf,
                        email=step.email, message=step.message)
        case LdapForm():
            return page("ldap.html", status=step.status, title="Sign in", connection_id=step.connection_id,
                        tx=step.tx_id, csrf=step.csrf, directory=step.directory, username=step.username,
                        message=step.message)
        case TooManyAttempts(message=message):
            return login_error_page("Too many attempts", message, status=429)
        case Refused(heading=heading, message=message, status=status):
            return login_error_page(heading, message, status=status)


def fail(uow: UnitOfWork, runtime: SignInServices, request: Request, exc: LoginFailed) -> HTMLResponse:
    """Audit a failed sign-in and show the person its message."""
    flow.record_failure(uow, exc, now=runtime.clock(), request_id=request_id(request))
    return login_error_page("We could not sign you in", exc.message, status=exc.status, reference=request_id(request))


def answer(uow: UnitOfWork, runtime: SignInServices, request: Request, step: Callable[[], Step]) -> Response:
    """Run one login call and render its step; a LoginFailed becomes the audited error page."""
    try:
        return render(step())
    except LoginFailed as exc:
        return fail(uow, runtime, request, exc)


async def answer_awaited(uow: UnitOfWork, runtime: SignInServices, request: Request,
                         step: Awaitable[Step]) -> Response:
    """:func:`answer` for a login call that awaits (its database steps in worker threads): a
    LoginFailed's audit record is written in a worker thread too."""
    try:
        return render(await step)
    except LoginFailed as exc:
        return await anyio.to_thread.run_sync(fail, uow, runtime, request, exc)
