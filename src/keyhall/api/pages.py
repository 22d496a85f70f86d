"""The hosted pages people see: the login page, the connection chooser, the password form, the
per-connection SSO start and callback, and plain error pages."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from keyhall.api.deps import RuntimeDep, UowDep, client_address
from keyhall.api.http import request_id
from keyhall.core.connections import Connection
from keyhall.core.policy import email_domain, password_login_allowed
from keyhall.core.transactions import LoginTransaction
from keyhall.core.vocabulary import Protocol
from keyhall.errors import RateLimited
from keyhall.login import flow
from keyhall.login import ldap as ldap_login
from keyhall.login import oidc as oidc_login
from keyhall.login.flow import LoginFailed
from keyhall.provider.authorize import AuthorizeRequest
from keyhall.provider.model import ProviderUnitOfWork
from keyhall.security.passwords import verify_password
from keyhall.security.rate_limit import Limit

LOGIN_COOKIE = "keyhall_login"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; frame-ancestors 'none'; "
       "base-uri 'none'")

_templates = Environment(loader=PackageLoader("keyhall", "web/templates"), autoescape=select_autoescape(["html"]))

router = APIRouter(tags=["pages"], include_in_schema=False)


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
    })


def login_error_page(heading: str, message: str, *, status: int = 400, reference: str | None = None) -> HTMLResponse:
    return page("error.html", status=status, title=heading, heading=heading, message=message, reference=reference)


def set_login_cookie(response: Response, tx_id: str, public_url: str) -> None:
    response.set_cookie(LOGIN_COOKIE, tx_id, max_age=900, httponly=True, samesite="lax",
                        secure=public_url.startswith("https://"), path="/")


def _uow(uow: Any) -> ProviderUnitOfWork:
    provider_uow: ProviderUnitOfWork = uow
    return provider_uow


def _email_form(tx: LoginTransaction, *, email: str | None = None, message: str | None = None,
                status: int = 200) -> HTMLResponse:
    return page("email.html", status=status, title="Sign in", tx=tx.id, csrf=tx.data["csrf"], email=email,
                message=message)


def _password_form(tx: LoginTransaction, *, email: str | None, message: str | None = None,
                   status: int = 200) -> HTMLResponse:
    return page("password.html", status=status, title="Sign in", tx=tx.id, csrf=tx.data["csrf"], email=email,
                message=message)


def start_connection(uow: ProviderUnitOfWork, runtime: Any, conn: Connection, tx: LoginTransaction, *,
                     email: str | None) -> Response:
    """Send the browser on to ``conn``, which routing (or `flow.pinned_connection`) has already vetted."""
    if conn.protocol is Protocol.OIDC:
        url = oidc_login.begin(uow, runtime.relying_party, conn, tx, login_hint=email, now=runtime.clock())
        uow.commit()
        return RedirectResponse(url, status_code=303)
    if conn.protocol is Protocol.LDAP:
        return RedirectResponse(f"/sso/{conn.id}/ldap?tx={tx.id}", status_code=303)
    if conn.protocol is Protocol.SAML:
        from keyhall.api.saml_pages import service_provider
        from keyhall.login import saml as saml_login

        url = saml_login.begin(uow, service_provider(runtime), conn, tx, now=runtime.clock())
        uow.commit()
        return RedirectResponse(url, status_code=303)
    raise LoginFailed(f"Sign-in through {conn.protocol.upper()} connections is not available on this server yet.",
                      reason="protocol_unsupported", connection=conn, status=501)


def proceed(uow: ProviderUnitOfWork, runtime: Any, tx: LoginTransaction, *, email: str | None,
            from_hint: bool = False, request_id: str | None = None) -> Response:
    """Route the sign-in and answer with the next step: IdP redirect, chooser, form or error."""
    request = AuthorizeRequest.from_dict(tx.data["request"])
    try:
        found = flow.route(uow, request, email=email,
                           allow_unverified_domains=runtime.settings.allow_unverified_domains)
    except LoginFailed as exc:
        if from_hint and exc.reason == "invalid_email":  # a hint that is no address: as if none was given
            flow.pin(uow, tx, flow.Route(ask_email=True))
            uow.commit()
            return _email_form(tx)
        raise
    flow.pin(uow, tx, found)
    uow.commit()
    if found.ask_email:
        return _email_form(tx)
    if len(found.connections) == 1:
        return start_connection(uow, runtime, found.connections[0], tx, email=email)
    org = found.organization
    password_ok = org is not None and (email is None or password_login_allowed(uow, org, email))
    if found.connections:
        choices = [{"label": c.display_name or c.branding.get("display_name") or c.name,
                    "href": f"/sso/{c.id}/start?tx={tx.id}"} for c in found.connections]
        return page("choose.html", title="Choose how to sign in", choices=choices,
                    password=f"/login/password?tx={tx.id}" if password_ok else None)
    if org is not None and password_ok:
        return _password_form(tx, email=email)
    if from_hint:
        return _email_form(tx, email=email)
    domain = email_domain(email or "") or "that domain"
    return _email_form(tx, email=email, status=404,
                       message=f"No organization signs in people from {domain} here. Check the address, or ask "
                               f"your administrator which email to use.")


def _tx_from(uow: ProviderUnitOfWork, runtime: Any, request: Request, tx_id: str | None) -> LoginTransaction:
    cookie = request.cookies.get(LOGIN_COOKIE)
    return flow.authorize_transaction(uow, tx_id or cookie, cookie, runtime.clock())


def _check_csrf(tx: LoginTransaction, token: str) -> None:
    if not secrets.compare_digest(str(tx.data.get("csrf", "")), token):
        raise LoginFailed("This form has expired. Go back to your application and start again.",
                          reason="csrf_invalid", status=403)


def _fail(uow: ProviderUnitOfWork, runtime: Any, request: Request, exc: LoginFailed) -> HTMLResponse:
    uow.rollback()
    flow.audit_login(uow, ok=False, reason=exc.reason, now=runtime.clock(), request_id=request_id(request),
                     connection=exc.connection, organization_id=exc.organization_id,
                     extra={"detail": exc.detail} if exc.detail else None)
    uow.commit()
    return login_error_page("We could not sign you in", exc.message, status=exc.status, reference=request_id(request))


@router.get("/login")
def login_page(request: Request, uow: UowDep, runtime: RuntimeDep, tx: str | None = None) -> Response:
    provider_uow = _uow(uow)
    try:
        transaction = _tx_from(provider_uow, runtime, request, tx)
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)
    return _email_form(transaction)


@router.post("/login")
def login_submit(request: Request, uow: UowDep, runtime: RuntimeDep, tx: Annotated[str, Form(max_length=64)],
                 csrf: Annotated[str, Form(max_length=64)], email: Annotated[str, Form(max_length=320)]) -> Response:
    provider_uow = _uow(uow)
    try:
        transaction = _tx_from(provider_uow, runtime, request, tx)
        _check_csrf(transaction, csrf)
        return proceed(provider_uow, runtime, transaction, email=email.strip(), request_id=request_id(request))
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)


@router.get("/login/password")
def password_page(request: Request, uow: UowDep, runtime: RuntimeDep, tx: str | None = None) -> Response:
    provider_uow = _uow(uow)
    try:
        transaction = _tx_from(provider_uow, runtime, request, tx)
        flow.password_organizations(transaction)  # refused when the routing offered no password sign-in
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)
    return _password_form(transaction, email=None)


@router.post("/login/password")
def password_submit(request: Request, uow: UowDep, runtime: RuntimeDep, tx: Annotated[str, Form(max_length=64)],
                    csrf: Annotated[str, Form(max_length=64)], email: Annotated[str, Form(max_length=320)] = "",
                    password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    provider_uow = _uow(uow)
    now = runtime.clock()
    email = email.strip().lower()
    try:
        transaction = _tx_from(provider_uow, runtime, request, tx)
        _check_csrf(transaction, csrf)
        if not email or not password:
            return _password_form(transaction, email=email, status=400, message="Enter your email and password.")
        # Only a genuine attempt (live transaction, right CSRF token) counts against the account. The
        # counter writes on its own connection, so this request's read transaction ends first (SQLite).
        allowed_orgs = flow.password_organizations(transaction)
        provider_uow.rollback()
        runtime.limiter.hit(f"password:{email}", runtime.password_limit, now)
        candidates = _local_accounts(provider_uow, email, allowed_orgs)
        user = next((u for u in candidates if verify_password(u.password_hash, password)), None)
        if user is not None and user.disabled:
            raise LoginFailed("This account is disabled. Ask your organization's administrator.",
                              reason="user_disabled", status=403, organization_id=user.organization_id)
        if user is None:
            if not candidates:
                verify_password(None, password)  # same work as a real check: no account enumeration by timing
            flow.audit_login(provider_uow, ok=False, reason="bad_credentials", now=now,
                             request_id=request_id(request), extra={"method": "password"})
            provider_uow.commit()
            return _password_form(transaction, email=email, status=401,
                                  message="That email and password do not match an account.")
        user_org = provider_uow.organizations.get(user.organization_id)
        if user_org is None or not password_login_allowed(provider_uow, user_org, email):
            raise LoginFailed("Your organization requires you to sign in with its single sign-on. Go back and "
                              "enter your email to be sent to it.", reason="password_disabled", status=403,
                              organization_id=user.organization_id)
        user.last_login_at = now
        provider_uow.users.save(user)
        url = flow.complete(provider_uow, transaction.id, user, connection=None,
                            authn=flow.Authentication(amr=["pwd"]), issuer=runtime.settings.public_url, now=now,
                            request_id=request_id(request))
        return RedirectResponse(url, status_code=303)
    except RateLimited as exc:
        return login_error_page("Too many attempts", f"Too many sign-in attempts for this account. Try again in "
                                f"{exc.retry_after} seconds.", status=429)
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)


def _local_accounts(uow: ProviderUnitOfWork, email: str, organization_ids: list[str] | None) -> list[Any]:
    """The local accounts with this email in the organizations the routing allows (None: any)."""
    if organization_ids is None:
        return list(uow.users.local_accounts(email))
    found = (uow.users.local_by_email(org_id, email) for org_id in organization_ids)
    return [user for user in found if user is not None]


@router.get("/sso/{connection_id}/start")
def sso_start(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
              tx: str | None = None) -> Response:
    provider_uow = _uow(uow)
    try:
        transaction = _tx_from(provider_uow, runtime, request, tx)
        # Chosen by the person (chooser link): it must be one this sign-in's routing allowed.
        conn = flow.pinned_connection(provider_uow, transaction, connection_id)
        return start_connection(provider_uow, runtime, conn, transaction, email=None)
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)


@router.get("/sso/{connection_id}/oidc/callback")
def oidc_callback(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    provider_uow = _uow(uow)
    params = {k: v[:4096] for k, v in request.query_params.items()}
    now = runtime.clock()
    try:
        trip = oidc_login.take_trip(provider_uow, connection_id, params, now)
        provider_uow.commit()  # the state is spent before any network call, whatever happens next
        cookie = request.cookies.get(LOGIN_COOKIE)
        if not cookie or not secrets.compare_digest(cookie, str(trip.parent_id)):
            raise LoginFailed("This sign-in was not started in this browser. Go back to your application and start "
                              "again.", reason="transaction_not_bound")
        conn, user, authn = oidc_login.finish(provider_uow, runtime.relying_party, trip, params, now)
        url = flow.complete(provider_uow, str(trip.parent_id), user, connection=conn, authn=authn,
                            issuer=runtime.settings.public_url, now=now, request_id=request_id(request))
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)
    response = RedirectResponse(url, status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


#: Sign-in attempts through LDAP forms from one client address, whatever the usernames.
LDAP_ADDRESS_LIMIT = Limit(requests=60, window_seconds=300)


def _ldap_form(conn: Connection, tx: LoginTransaction, *, username: str | None = None, message: str | None = None,
               status: int = 200) -> HTMLResponse:
    return page("ldap.html", status=status, title="Sign in", connection_id=conn.id, tx=tx.id, csrf=tx.data["csrf"],
                directory=conn.display_name or conn.branding.get("display_name") or conn.name, username=username,
                message=message)


def _ldap_connection(uow: ProviderUnitOfWork, tx: LoginTransaction, connection_id: str) -> Connection:
    """The active LDAP connection this sign-in's routing allowed."""
    return flow.pinned_connection(uow, tx, connection_id, protocol=Protocol.LDAP)


@router.get("/sso/{connection_id}/ldap")
def ldap_page(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
              tx: str | None = None) -> Response:
    provider_uow = _uow(uow)
    try:
        transaction = _tx_from(provider_uow, runtime, request, tx)
        return _ldap_form(_ldap_connection(provider_uow, transaction, connection_id), transaction)
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)


@router.post("/sso/{connection_id}/ldap")
def ldap_submit(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
                tx: Annotated[str, Form(max_length=64)], csrf: Annotated[str, Form(max_length=64)],
                username: Annotated[str, Form(max_length=256)] = "",
                password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    provider_uow = _uow(uow)
    now = runtime.clock()
    name = username.strip()
    address = client_address(request)
    try:
        transaction = _tx_from(provider_uow, runtime, request, tx)
        _check_csrf(transaction, csrf)
        conn = _ldap_connection(provider_uow, transaction, connection_id)
        provider_uow.rollback()  # no database lock held while counting or during the directory round trip
        if not name:
            return _ldap_form(conn, transaction, message="Enter your username.", status=400)
        # Only genuine attempts count (live transaction, right CSRF token): per person and per address,
        # keyed by the stored connection id, never the URL's spelling of it.
        runtime.limiter.hit(f"ldap:{conn.id}:{name.lower()}", runtime.password_limit, now)
        runtime.limiter.hit(f"ldap-address:{address}", LDAP_ADDRESS_LIMIT, now)
        try:
            user = ldap_login.sign_in(provider_uow, conn, name, password, now=now,
                                      policy=runtime.relying_party.policy)
        except LoginFailed as exc:
            if exc.reason not in ldap_login.RETRY_REASONS:
                raise
            provider_uow.rollback()
            flow.audit_login(provider_uow, ok=False, reason=exc.reason, now=now, request_id=request_id(request),
                             connection=conn, extra={"method": "ldap"})
            provider_uow.commit()
            return _ldap_form(conn, transaction, username=name, message=exc.message, status=exc.status)
        url = flow.complete(provider_uow, transaction.id, user, connection=conn,
                            authn=flow.Authentication(amr=["pwd"]), issuer=runtime.settings.public_url, now=now,
                            request_id=request_id(request))
    except RateLimited as exc:
        return login_error_page("Too many attempts", f"Too many sign-in attempts. Try again in {exc.retry_after} "
                                "seconds.", status=429)
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)
    response = RedirectResponse(url, status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response
