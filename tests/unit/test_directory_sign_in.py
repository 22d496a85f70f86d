"""Sign-in of users a SCIM directory provisioned (core.provisioning): linked by the email Keyhall
vouches for, then by externalId = the IdP's subject; allowed under ``manual`` provisioning; refused
when the directory deactivated them; their groups are their directory groups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from keyhall.core.connections import Connection
from keyhall.core.provisioning import provision
from keyhall.core.users import LoginRefused, Profile, User
from keyhall.core.vocabulary import Protocol, Provider, UserProvisioning

NOW = datetime(2026, 12, 7, tzinfo=UTC)


class Users:
    """In memory, with the repository's interface; ``directory`` maps user id → its directory groups."""

    def __init__(self, *users: User, directory: dict[str, list[str]] | None = None,
                 external_ids: dict[str, str] | None = None) -> None:
        self.users = {u.id: u for u in users}
        self.directory = directory or {}
        self.external_ids = external_ids or {}

    def by_subject(self, connection_id: str, subject: str) -> User | None:
        return next((u for u in self.users.values() if (u.connection_id, u.subject) == (connection_id, subject)), None)

    def precreated(self, connection_id: str, email: str) -> User | None:
        return None

    def add(self, user: User) -> None:
        self.users[user.id] = user

    def save(self, user: User) -> None:
        self.users[user.id] = user

    def directory_user(self, organization_id: str, *, email: str | None, external_id: str) -> User | None:
        candidates = [u for u in self.users.values() if u.id in self.directory and u.subject is None
                      and u.organization_id == organization_id]
        by_email = [u for u in candidates if email and u.email == email.lower()]
        by_external = [u for u in candidates if self.external_ids.get(u.id) == external_id]
        return (by_email or by_external or [None])[0]

    def directory_group_names(self, user_id: str) -> list[str] | None:
        return self.directory.get(user_id)


def connection(**fields: Any) -> Connection:
    return Connection(id="c1", organization_id="o1", protocol=Protocol.OIDC, provider=Provider.GENERIC, name="corp",
                      **fields)


def directory_user(user_id: str = "u1", email: str = "ann@acme.example", **fields: Any) -> User:
    values: dict[str, Any] = {"connection_id": None, "subject": None, "directory_id": "d1", **fields}
    return User(id=user_id, organization_id="o1", email=email, name="Ann Directory", **values)


def test_a_directory_user_is_linked_by_vouched_email_even_under_manual_provisioning() -> None:
    users = Users(directory_user(), directory={"u1": ["Engineering", "All"]})
    conn = connection(user_provisioning=UserProvisioning.MANUAL)
    user, created = provision(users, conn, Profile(subject="idp-9", email="ann@acme.example", email_verified=True,
                                                   name="From IdP", groups=["idp-group"]), NOW)
    assert (user.id, created) == ("u1", False)
    assert (user.connection_id, user.subject) == ("c1", "idp-9")
    assert user.groups == ["All", "Engineering"]
    assert user.name == "Ann Directory"  # the directory owns the profile
    assert user.email_verified is True
    again, _ = provision(users, conn, Profile(subject="idp-9", email="ann@acme.example"), NOW)
    assert again.id == "u1"
    assert again.email_verified is False  # this sign-in did not vouch for it


def test_an_unvouched_email_does_not_link_but_the_external_id_does() -> None:
    users = Users(directory_user(), directory={"u1": []}, external_ids={"u1": "00u-okta"})
    conn = connection(user_provisioning=UserProvisioning.MANUAL)
    with pytest.raises(LoginRefused) as refused:
        provision(users, conn, Profile(subject="someone-else", email="ann@acme.example", email_verified=False), NOW)
    assert refused.value.reason == "not_provisioned"
    user, _ = provision(users, conn, Profile(subject="00u-okta", email=None), NOW)
    assert user.id == "u1"


def test_a_deactivated_directory_user_cannot_sign_in_first_or_again() -> None:
    users = Users(directory_user(disabled=True), directory={"u1": []})
    with pytest.raises(LoginRefused) as refused:
        provision(users, connection(), Profile(subject="s", email="ann@acme.example", email_verified=True), NOW)
    assert refused.value.reason == "user_disabled"
    linked = directory_user(connection_id="c1", subject="s", disabled=True)
    with pytest.raises(LoginRefused):
        provision(Users(linked, directory={"u1": []}), connection(), Profile(subject="s"), NOW)


def test_group_mappings_apply_to_directory_groups() -> None:
    users = Users(directory_user(connection_id="c1", subject="s"), directory={"u1": ["eng", "ops"]})
    conn = connection(group_mappings=[{"idp_group": "eng", "group": "developers"}])
    user, _ = provision(users, conn, Profile(subject="s", groups=["ops"]), NOW)
    assert user.groups == ["developers"]


def test_manual_provisioning_still_refuses_people_no_directory_sent() -> None:
    users = Users(directory_user(), directory={"u1": []})
    with pytest.raises(LoginRefused) as refused:
        provision(users, connection(user_provisioning=UserProvisioning.MANUAL),
                  Profile(subject="x", email="mallory@acme.example", email_verified=True), NOW)
    assert refused.value.reason == "not_provisioned"
