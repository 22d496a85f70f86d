"""The hosted pages people see: the login page, the connection chooser, the password form, the
per-connection SSO start and callback, and the LDAP form. Each handler parses, makes one call into
``keyhall.login`` and renders the step it answers (``web.rendering``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from keyhall.api.deps import RuntimeDep, UowDep, client_address
from keyhall.api.http import request_id
from keyhall.login import entry
from keyhall.login import ldap as ldap_login
from keyhall.login import oidc as oidc_login
from keyhall.login import password as password_login
from keyhall.web.rendering import answer, answer_awaited, login_cookie

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/login")
def login_page(request: Request, uow: UowDep, runtime: RuntimeDep, tx: str | None = None) -> Response:
    return answer(uow, runtime, request, lambda: entry.open_login(uow, runtime, tx, login_cookie(request)))


@router.post("/login")
def login_submit(request: Request, uow: UowDep, runtime: RuntimeDep, tx: Annotated[str, Form(max_length=64)],
                 csrf: Annotated[str, Form(max_length=64)], email: Annotated[str, Form(max_length=320)]) -> Response:
    return answer(uow, runtime, request,
                  lambda: entry.submit_email(uow, runtime, tx, login_cookie(request), csrf, email))


@router.get("/login/password")
def password_page(request: Request, uow: UowDep, runtime: RuntimeDep, tx: str | None = None) -> Response:
    return answer(uow, runtime, request, lambda: entry.open_password(uow, runtime, tx, login_cookie(request)))


@router.post("/login/password")
def password_submit(request: Request, uow: UowDep, runtime: RuntimeDep, tx: Annotated[str, Form(max_length=64)],
                    csrf: Annotated[str, Form(max_length=64)], email: Annotated[str, Form(max_length=320)] = "",
                    password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    return answer(uow, runtime, request, lambda: password_login.sign_in(
        uow, runtime, tx, login_cookie(request), csrf, email, password, request_id=request_id(request)))


@router.get("/sso/{connection_id}/start")
def sso_start(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
              tx: str | None = None) -> Response:
    return answer(uow, runtime, request,
                  lambda: entry.choose(uow, runtime, connection_id, tx, login_cookie(request)))


@router.get("/sso/{connection_id}/oidc/callback")
async def oidc_callback(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    params = {k: v[:4096] for k, v in request.query_params.items()}
    return await answer_awaited(uow, runtime, request, oidc_login.callback(
        uow, runtime.relying_party, connection_id, params, browser=login_cookie(request),
        issuer=runtime.settings.public_url, now=runtime.clock(), request_id=request_id(request)))


@router.get("/sso/{connection_id}/ldap")
def ldap_page(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
              tx: str | None = None) -> Response:
    return answer(uow, runtime, request, lambda: ldap_login.open_form(
        uow, connection_id, tx, login_cookie(request), now=runtime.clock()))


@router.post("/sso/{connection_id}/ldap")
def ldap_submit(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
                tx: Annotated[str, Form(max_length=64)], csrf: Annotated[str, Form(max_length=64)],
                username: Annotated[str, Form(max_length=256)] = "",
                password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    return answer(uow, runtime, request, lambda: ldap_login.submit(
        uow, connection_id, tx, login_cookie(request), csrf, username, password, address=client_address(request),
        limiter=runtime.limiter, username_limit=runtime.password_limit, address_limit=ldap_login.ADDRESS_LIMIT,
        policy=runtime.relying_party.policy, issuer=runtime.settings.public_url, now=runtime.clock(),
        request_id=request_id(request)))
