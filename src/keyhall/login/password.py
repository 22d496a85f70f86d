"""Password sign-in to a local account: the attempt limit, the check against the accounts the
routing allows, the disabled and policy checks, then ``flow.complete``."""

from __future__ import annotations

from keyhall.core.policy import password_login_allowed
from keyhall.core.ports import UnitOfWork
from keyhall.core.users import User
from keyhall.errors import RateLimited
from keyhall.login import flow
from keyhall.login.entry import SignInServices, password_form
from keyhall.login.flow import LoginFailed
from keyhall.login.steps import Redirect, Step, TooManyAttempts
from keyhall.security.passwords import verify_password


def sign_in(uow: UnitOfWork, runtime: SignInServices, tx_id: str, cookie: str | None, csrf: str, email: str,
            password: str, *, request_id: str | None) -> Step:
    """``POST /login/password``: the product's code on success, the form again on a wrong password;
    raises LoginFailed for a sign-in that cannot go on."""
    now = runtime.clock()
    email = email.strip().lower()
    try:
        tx = flow.form_transaction(uow, tx_id, cookie, csrf, now)
        if not email or not password:
            return password_form(tx, email=email, status=400, message="Enter your email and password.")
        # Only a genuine attempt (live transaction, right CSRF token) counts against the account. The
        # counter writes on its own connection, so this request's read transaction ends first (SQLite).
        allowed_orgs = flow.password_organizations(tx)
        uow.rollback()
        runtime.limiter.hit(f"password:{email}", runtime.password_limit, now)
    except RateLimited as exc:
        return TooManyAttempts(f"Too many sign-in attempts for this account. Try again in {exc.retry_after} "
                               "seconds.")
    candidates = local_accounts(uow, email, allowed_orgs)
    user = next((u for u in candidates if verify_password(u.password_hash, password)), None)
    if user is not None and user.disabled:
        raise LoginFailed("This account is disabled. Ask your organization's administrator.",
                          reason="user_disabled", status=403, organization_id=user.organization_id)
    if user is None:
        if not candidates:
            verify_password(None, password)  # same work as a real check: no account enumeration by timing
        flow.audit_login(uow, ok=False, reason="bad_credentials", now=now, request_id=request_id,
                         extra={"method": "password"})
        uow.commit()
        return password_form(tx, email=email, status=401, message="That email and password do not match an account.")
    user_org = uow.organizations.get(user.organization_id)
    if user_org is None or not password_login_allowed(uow, user_org, email):
        raise LoginFailed("Your organization requires you to sign in with its single sign-on. Go back and "
                          "enter your email to be sent to it.", reason="password_disabled", status=403,
                          organization_id=user.organization_id)
    user.last_login_at = now
    uow.users.save(user)
    url = flow.complete(uow, tx.id, user, connection=None, authn=flow.Authentication(amr=["pwd"]),
                        issuer=runtime.settings.public_url, now=now, request_id=request_id)
    return Redirect(url)


def local_accounts(uow: UnitOfWork, email: str, organization_ids: list[str] | None) -> list[User]:
    """The local accounts with this email in the organizations the routing allows (None: any)."""
    if organization_ids is None:
        return list(uow.users.local_accounts(email))
    found = (uow.users.local_by_email(org_id, email) for org_id in organization_ids)
    return [user for user in found if user is not None]
