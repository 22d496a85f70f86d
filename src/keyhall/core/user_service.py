"""Managing an organization's users: local password accounts, pre-created and provisioned SSO users.

Disabling or deleting a user takes their access away at once: every token family (refresh tokens,
and through ``sid`` every access token) is revoked or forgotten in the same transaction, and the
provider re-checks the user on every refresh and userinfo call. A disabled user's next sign-in is
refused (``user_disabled``). Deleting is forgetting: the user's row and token families go; if the
connection provisions just in time, the same person signing in again becomes a new account with a
new id (so a new pairwise ``sub`` at every product). To keep someone out, disable them instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keyhall.core import audit, events
from keyhall.core.access import require_sso_writer
from keyhall.core.connection_service import Context, organization_for
from keyhall.core.organizations import Organization
from keyhall.core.ports import GrantRepository, Page, UnitOfWork, UserRepository
from keyhall.core.sessions import end_user_sessions
from keyhall.core.users import User, new_user
from keyhall.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from keyhall.security.passwords import check_password_strength, hash_password

#: What ``PATCH`` may change. ``email`` is not among them: it is what the IdP (or the account's
#: creation) vouched for, and Keyhall asserts it to products; an administrator's edit is not proof.
#: For SSO users whose connection syncs profiles, the IdP's values replace these at the next sign-in.
WRITABLE = ("disabled", "name", "given_name", "family_name")


def create_user(uow: UnitOfWork, users: UserRepository, ctx: Context, org_ref: str, *, email: str, name: str | None,
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
    events.emit(uow, "user.created", organization_id=org.id, data=events.user_data(user), now=ctx.now)
    uow.commit()
    return user


def list_users(uow: UnitOfWork, users: UserRepository, ctx: Context, org_ref: str, *, limit: int,
               cursor: str | None) -> Page[User]:
    org = organization_for(uow, ctx, org_ref)
    return users.list_page(org.id, limit=limit, cursor=cursor)


MAX_RETRIES = 3


def _user_of(users: UserRepository, org: Organization, user_id: str) -> User:
    user = users.get(user_id[:36])
    if user is None or user.organization_id != org.id:
        raise NotFound("user not found", details={"id": user_id})
    return user


def _check_version(user: User, expected_version: int | None) -> None:
    if expected_version is not None and user.version != expected_version:
        raise PreconditionFailed(f"the user changed since you read it (version {user.version}, "
                                 f"If-Match {expected_version})")


def get_user(uow: UnitOfWork, users: UserRepository, ctx: Context, org_ref: str, user_id: str) -> User:
    return _user_of(users, organization_for(uow, ctx, org_ref), user_id)


def etag(user: User) -> str:
    return f'"{user.version}"'


def update_user(uow: UnitOfWork, users: UserRepository, sessions: GrantRepository, ctx: Context, org_ref: str,
                user_id: str, changes: Mapping[str, Any], *, expected_version: int | None) -> User:
    """Apply ``changes`` (only ``WRITABLE`` names). Disabling revokes every token family of the user
    in the same transaction; re-enabling does not bring them back (the person signs in again).

    With ``expected_version`` (an ``If-Match``) a stale version is 412; without it, a concurrent
    write (a sign-in updating the profile) makes us re-read and re-apply the change."""
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    unknown = sorted(set(changes) - set(WRITABLE))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: cannot be changed; writable fields are {', '.join(WRITABLE)}",
                           field=unknown[0])
    for _attempt in range(MAX_RETRIES):
        user = _user_of(users, org, user_id)
        _check_version(user, expected_version)
        before = {name: getattr(user, name) for name in WRITABLE}
        for name, value in changes.items():
            setattr(user, name, value)
        diff = audit.diff(before, {name: getattr(user, name) for name in WRITABLE})
        if not diff:
            return user
        user.updated_at = ctx.now
        if not users.save_if_version(user, user.version):
            uow.rollback()
            if expected_version is not None:
                raise PreconditionFailed("the user changed since you read it")
            continue
        action = "user.updated"
        if "disabled" in diff:
            action = "user.disabled" if user.disabled else "user.enabled"
        if user.disabled:
            # Products with a back-channel logout URI hear of it; what is left is revoked all the same.
            revoked = end_user_sessions(uow, user.id, ctx.now, reason="user_disabled", actor=ctx.principal.actor,
                                        request_id=ctx.request_id)
            revoked += sessions.revoke_user(user.id, ctx.now)
            if revoked:
                diff["sessions_revoked"] = revoked
        uow.audit.add(audit.event(organization_id=org.id, actor=ctx.principal.actor, action=action,
                                  target_type="user", target_id=user.id, request_id=ctx.request_id, now=ctx.now,
                                  changes=diff))
        changed = [name for name in diff if name in WRITABLE]
        events.emit(uow, "user.updated", organization_id=org.id, data=events.user_data(user, changed=changed),
                    now=ctx.now)
        if action == "user.disabled":
            events.emit(uow, "user.disabled", organization_id=org.id, data=events.user_data(user), now=ctx.now)
        uow.commit()
        return user
    raise Conflict("the user is being changed by others right now; try again")


def delete_user(uow: UnitOfWork, users: UserRepository, sessions: GrantRepository, ctx: Context, org_ref: str,
                user_id: str, *, expected_version: int | None) -> None:
    """Forget the user and every token family issued to them, in one transaction."""
    org = organization_for(uow, ctx, org_ref)
    require_sso_writer(ctx.principal, org)
    user = _user_of(users, org, user_id)
    _check_version(user, expected_version)
    end_user_sessions(uow, user.id, ctx.now, reason="user_deleted", actor=ctx.principal.actor,
                      request_id=ctx.request_id)
    sessions.forget_user(user.id)
    users.delete(user.id)
    uow.audit.add(audit.event(
        organization_id=org.id, actor=ctx.principal.actor, action="user.deleted", target_type="user",
        target_id=user.id, request_id=ctx.request_id, now=ctx.now,
        changes={"email": {"from": user.email, "to": None}, "connection_id": user.connection_id},
    ))
    events.emit(uow, "user.deleted", organization_id=org.id, data=events.user_data(user), now=ctx.now)
    uow.commit()
