"""The first steps of a sign-in: the product's authorization request (``authorize``), the login
page, the email typed there, the chooser's pick, the password page, and the choice of what comes
next (``proceed``).

Each function takes what the surface parsed and answers the next step (``keyhall.login.steps``);
failures raise ``LoginFailed``. ``runtime`` is what the sign-in needs of the service's runtime
(``SignInServices``; ``keyhall.runtime.Runtime`` is one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol as Interface

from keyhall.core.connections import Connection
from keyhall.core.policy import email_domain, password_login_allowed
from keyhall.core.ports import UnitOfWork
from keyhall.core.transactions import LoginTransaction
from keyhall.core.vocabulary import Protocol
from keyhall.login import flow
from keyhall.login import oidc as oidc_login
from keyhall.login import saml as saml_login
from keyhall.login.flow import LoginFailed
from keyhall.login.steps import AskEmail, Choice, ChooseConnection, PasswordForm, Redirect, Refused, Step
from keyhall.provider.authorize import AuthorizeError, error_redirect, parse_authorize
from keyhall.security.rate_limit import Limit, RateLimiter
from keyhall.security.text import has_control
from keyhall.settings import Settings


class SignInServices(Interface):
    """What the sign-in needs of the service's runtime."""

    @property
    def settings(self) -> Settings: ...
    @property
    def relying_party(self) -> oidc_login.RelyingParty: ...
    @property
    def limiter(self) -> RateLimiter: ...
    @property
    def password_limit(self) -> Limit: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...


@dataclass(frozen=True)
class Authorizing:
    """The product's request, accepted: the new sign-in (the browser's login cookie must name
    ``tx_id``) and its first step, to be taken (it may raise ``LoginFailed``)."""

    tx_id: str
    first_step: Callable[[], Step]


def authorize(uow: UnitOfWork, runtime: SignInServices, params: Mapping[str, str]) -> Step | Authorizing:
    """``GET /oauth2/authorize``: validate the product's request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1)
    and start the sign-in; or answer the error: a redirect to the product when its redirect URI is
    trusted (§4.1.2.1), a plain page when it is not."""
    if any(has_control(k) or has_control(v) for k, v in params.items()):
        return Refused("This application cannot sign you in", "The sign-in request is malformed.")
    client_id = params.get("client_id")
    app = uow.applications.get(client_id[:64]) if client_id else None
    try:
        parsed = parse_authorize(params, app)
        try:
            max_age = flow.parse_max_age(params.get("max_age"))
        except ValueError as exc:
            raise AuthorizeError("invalid_request", str(exc), redirect_uri=parsed.redirect_uri,
                                 state=parsed.state) from exc
    except AuthorizeError as exc:
        if exc.redirect_uri is None:
            return Refused("This application cannot sign you in", exc.description)
        return Redirect(error_redirect(exc, runtime.settings.public_url))
    tx = flow.start(uow, parsed, runtime.clock(), max_age=max_age)
    uow.commit()
    return Authorizing(tx.id, lambda: proceed(uow, runtime, tx, email=parsed.login_hint or None, from_hint=True))


def ask_email(tx: LoginTransaction, *, email: str | None = None, message: str | None = None,
              status: int = 200) -> AskEmail:
    return AskEmail(tx.id, flow.csrf_of(tx), email=email, message=message, status=status)


def password_form(tx: LoginTransaction, *, email: str | None, message: str | None = None,
                  status: int = 200) -> PasswordForm:
    return PasswordForm(tx.id, flow.csrf_of(tx), email=email, message=message, status=status)


def start_connection(uow: UnitOfWork, runtime: SignInServices, conn: Connection, tx: LoginTransaction, *,
                     email: str | None) -> Redirect:
    """Send the browser on to ``conn``, which routing (or `flow.pinned_connection`) has already vetted."""
    if conn.protocol is Protocol.OIDC:
        url = oidc_login.begin(uow, runtime.relying_party, conn, tx, login_hint=email, now=runtime.clock())
        uow.commit()
        return Redirect(url)
    if conn.protocol is Protocol.LDAP:
        return Redirect(f"/sso/{conn.id}/ldap?tx={tx.id}")
    if conn.protocol is Protocol.SAML:
        url = saml_login.begin(uow, saml_login.service_provider(runtime.settings), conn, tx, now=runtime.clock())
        uow.commit()
        return Redirect(url)
    raise LoginFailed(f"Sign-in through {conn.protocol.upper()} connections is not available on this server yet.",
                      reason="protocol_unsupported", connection=conn, status=501)


def proceed(uow: UnitOfWork, runtime: SignInServices, tx: LoginTransaction, *, email: str | None,
            from_hint: bool = False) -> Step:
    """Route the sign-in and answer with the next step: IdP redirect, chooser or form (or raise)."""
    request = flow.request_of(tx)
    try:
        found = flow.route(uow, request, email=email,
                           allow_unverified_domains=runtime.settings.allow_unverified_domains)
    except LoginFailed as exc:
        if from_hint and exc.reason == "invalid_email":  # a hint that is no address: as if none was given
            flow.pin(uow, tx, flow.Route(ask_email=True))
            uow.commit()
            return ask_email(tx)
        raise
    flow.pin(uow, tx, found)
    uow.commit()
    if found.ask_email:
        return ask_email(tx)
    if len(found.connections) == 1:
        return start_connection(uow, runtime, found.connections[0], tx, email=email)
    org = found.organization
    password_ok = org is not None and (email is None or password_login_allowed(uow, org, email))
    if found.connections:
        choices = [Choice(label=c.display_name or c.branding.get("display_name") or c.name,
                          href=f"/sso/{c.id}/start?tx={tx.id}") for c in found.connections]
        return ChooseConnection(choices, password_url=f"/login/password?tx={tx.id}" if password_ok else None)
    if org is not None and password_ok:
        return password_form(tx, email=email)
    if from_hint:
        return ask_email(tx, email=email)
    domain = email_domain(email or "") or "that domain"
    return ask_email(tx, email=email, status=404,
                     message=f"No organization signs in people from {domain} here. Check the address, or ask "
                             f"your administrator which email to use.")


def open_login(uow: UnitOfWork, runtime: SignInServices, tx_id: str | None, cookie: str | None) -> Step:
    """``GET /login``: the email form of the browser's sign-in."""
    return ask_email(flow.authorize_transaction(uow, tx_id or cookie, cookie, runtime.clock()))


def submit_email(uow: UnitOfWork, runtime: SignInServices, tx_id: str, cookie: str | None, csrf: str,
                 email: str) -> Step:
    """``POST /login``: route by the typed email."""
    tx = flow.form_transaction(uow, tx_id, cookie, csrf, runtime.clock())
    return proceed(uow, runtime, tx, email=email.strip())


def open_password(uow: UnitOfWork, runtime: SignInServices, tx_id: str | None, cookie: str | None) -> Step:
    """``GET /login/password``: the password form, when the routing offered password sign-in."""
    tx = flow.authorize_transaction(uow, tx_id or cookie, cookie, runtime.clock())
    flow.password_organizations(tx)  # refused when the routing offered no password sign-in
    return password_form(tx, email=None)


def choose(uow: UnitOfWork, runtime: SignInServices, connection_id: str, tx_id: str | None,
           cookie: str | None) -> Step:
    """The chooser's link: a connection the person picked, which this sign-in's routing must allow."""
    tx = flow.authorize_transaction(uow, tx_id or cookie, cookie, runtime.clock())
    conn = flow.pinned_connection(uow, tx, connection_id)
    return start_connection(uow, runtime, conn, tx, email=None)
