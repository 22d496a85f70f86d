"""Just-in-time provisioning: the IdP has vouched for a person; find or create their user.

Users are keyed by (connection, IdP subject). An existing account is never taken over by email
alone: only a user pre-created for this connection (``manual`` provisioning) is linked, and only
when Keyhall vouches for the email (``profile.email_verified`` holds the verdict of
``profiles.email_verdict``: the IdP vouched for it *and* the connection's organization has
DNS-verified its domain). A connection with ``require_verified_email`` refuses every sign-in
without that verdict.

Users a SCIM directory of the organization provisioned are the organization's users: a first
sign-in through any of its connections links to one (by the email Keyhall vouches for, then by
``externalId`` equal to the IdP's subject), whatever the connection's provisioning mode, so with
``manual`` provisioning exactly the directory's (and pre-created) users can sign in. The directory
owns their profile; their ``groups`` are their directory groups (through the connection's group
mappings, if it has any). A user the directory deactivated cannot sign in.
"""

from __future__ import annotations

from datetime import datetime

from keyhall.core import events
from keyhall.core.connections import Connection
from keyhall.core.directories import groups_claim
from keyhall.core.ports import UserRepository
from keyhall.core.profiles import map_groups
from keyhall.core.users import LoginRefused, Profile, User, new_user
from keyhall.core.vocabulary import UserProvisioning

__all__ = ["LoginRefused", "announce_user_created", "provision"]


def _sign_in_directory_user(users: UserRepository, connection: Connection, profile: Profile, user: User,
                            directory_groups: list[str], now: datetime) -> User:
    """The directory owns the profile: only the link, the email verdict and the groups change."""
    if user.disabled:
        raise LoginRefused("this account is disabled", reason="user_disabled")
    user.connection_id, user.subject = connection.id, profile.subject
    user.email_verified = bool(profile.email_verified and user.email and profile.email
                               and user.email == profile.email.lower())
    user.groups = groups_claim(directory_groups, connection.group_mappings)
    user.last_login_at = user.updated_at = now
    users.save(user)
    return user


def provision(users: UserRepository, connection: Connection, profile: Profile, now: datetime) -> tuple[User, bool]:
    """The user for this sign-in, and whether it was created now. Raises LoginRefused.

    ``profile.email_verified`` must already be Keyhall's verdict (``profiles.email_verdict``), not
    what the IdP claimed."""
    if connection.require_verified_email and not profile.email_verified:
        raise LoginRefused("your organization accepts sign-ins only with an email address in a domain it has "
                           "verified; ask your administrator", reason="email_not_verified")
    groups = map_groups(connection, profile.groups)
    user = users.by_subject(connection.id, profile.subject)
    if user is not None:
        if user.disabled:
            raise LoginRefused("this account is disabled", reason="user_disabled")
        # Only a user some directory provisioned has directory groups (the row was just read).
        directory_groups = users.directory_group_names(user.id) if user.directory_id is not None else None
        if directory_groups is not None:
            return _sign_in_directory_user(users, connection, profile, user, directory_groups, now), False
        if connection.sync_profile:
            user.apply(profile, groups=groups)
        else:
            # The stored email is kept, but vouched for only if this sign-in vouched for it again.
            user.email_verified = bool(profile.email_verified and user.email and user.email == profile.email)
            if groups is not None:
                user.groups = list(groups)
        user.last_login_at = user.updated_at = now
        users.save(user)
        return user, False
    linked = users.directory_user(connection.organization_id, external_id=profile.subject,
                                  email=profile.email if profile.email and profile.email_verified else None)
    if linked is not None:
        names = users.directory_group_names(linked.id) or []
        return _sign_in_directory_user(users, connection, profile, linked, names, now), False
    if connection.user_provisioning is UserProvisioning.DISABLED:
        raise LoginRefused("this organization does not create new accounts through this connection",
                           reason="provisioning_disabled")
    if connection.user_provisioning is UserProvisioning.MANUAL:
        placeholder = users.precreated(connection.id, profile.email) if profile.email else None
        if placeholder is None or not profile.email_verified:
            raise LoginRefused("there is no account for you here yet; ask your administrator for access",
                               reason="not_provisioned")
        if placeholder.disabled:
            raise LoginRefused("this account is disabled", reason="user_disabled")
        placeholder.subject = profile.subject
        placeholder.apply(profile, groups=groups)
        placeholder.last_login_at = placeholder.updated_at = now
        users.save(placeholder)
        return placeholder, False
    user = new_user(connection.organization_id, connection.id, profile.subject, now)
    user.apply(profile, groups=groups if groups is not None else [])
    user.last_login_at = now
    users.add(user)
    return user, True


def announce_user_created(uow: events.EventingUnitOfWork, user: User, now: datetime) -> None:
    """The ``user.created`` event of a user ``provision`` just created, in the sign-in's transaction
    (so a sign-in that fails after provisioning announces nothing)."""
    events.emit(uow, "user.created", organization_id=user.organization_id, data=events.user_data(user), now=now)
