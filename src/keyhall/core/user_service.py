"""Managing an organization's users: local password accounts and pre-created SSO users."""

from __future__ import annotations

from typing import Protocol

from keyhall.core import audit
from keyhall.core.access import require_sso_writer
from keyhall.core.connection_service import Context, organization_for
from keyhall.core.ports import Page, UnitOfWork
from keyhall.core.users import User, new_user
from keyhall.errors import Conflict, InvalidInput, NotFound
from keyhall.security.passwords import check_password_strength, hash_password


class UserStore(Protocol):
    def get(self, user_id: str) -> User | None: ...
    def precreated(self, connection_id: str, email: str) -> User | None: ...
    def local_by_email(self, organization_id: str, email: str) -> User | None: ...
    def add(self, user: User) -> None: ...
    def list_page(self, organization_id: str, *, limit: int, cursor: str | None) -> Page[User]: ...


def create_user(uow: UnitOfWork, users: UserStore, ctx: Context, org_ref: str, *, email: str, name: str | None,
                password: str | None, connection_id: str | None) -> User:
    """A local account (with ``password``) or a user pre-created for a connection (``connection_id``)."""
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    email = email.strip().lower()
    if (password is None) == (connection_id is None):
        raise InvalidInput("password: give a password (local account) or a connection_id (pre-created SSO user)",
                           field="password")
    user = new_user(org.id, connection_id, None, ctx.now)
    user.email, user.name = email, name
    if password is not None:
        problem = check_password_strength(password)
        if problem:
            raise InvalidInput(f"password: {problem}", field="password")
        if users.local_by_email(org.id, email) is not None:
            raise Conflict("email: a local account with this email already exists", field="email")
        user.password_hash = hash_password(password)
        user.email_verified = False
    else:
        assert connection_id is not None
        if uow.connections.get(org.id, connection_id) is None:
            raise NotFound("connection not found", details={"field": "connection_id"})
        if users.precreated(connection_id, email) is not None:
            raise Conflict("email: this user is already pre-created for the connection", field="email")
    users.add(user)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="user.created", target_type="user",
        target_id=user.id, request_id=ctx.request_id, now=ctx.now,
        changes={"email": {"from": None, "to": email}, "kind": "local" if password else "precreated"},
    ))
    uow.commit()
    return user


def list_users(uow: UnitOfWork, users: UserStore, ctx: Context, org_ref: str, *, limit: int,
               cursor: str | None) -> Page[User]:
    org = organization_for(uow, ctx, org_ref)
    return users.list_page(org.id, limit=limit, cursor=cursor)
