"""People who sign in: provisioned from an IdP (keyed by connection and IdP subject) or local
password accounts of an organization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from keyhall.errors import KeyhallError


@dataclass
class Profile:
    """What an IdP asserted about a person, after the connection's attribute mapping."""

    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    username: str | None = None
    picture: str | None = None
    locale: str | None = None
    phone_number: str | None = None
    groups: list[str] = field(default_factory=list)


PROFILE_ATTRIBUTES = ("email", "email_verified", "name", "given_name", "family_name", "username", "picture",
                      "locale", "phone_number")


@dataclass
class User:
    id: str
    organization_id: str
    connection_id: str | None  # None: a local password account
    subject: str | None  # the IdP's subject; None until a pre-created user first signs in
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    username: str | None = None
    picture: str | None = None
    locale: str | None = None
    phone_number: str | None = None
    groups: list[str] = field(default_factory=list)
    password_hash: str | None = None
    disabled: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.min)
    updated_at: datetime = field(default_factory=lambda: datetime.min)
    last_login_at: datetime | None = None
    version: int = 1  # bumped by every stored change
    directory_id: str | None = None  # the SCIM directory that provisioned the user, if one did

    def apply(self, profile: Profile, *, groups: list[str] | None) -> None:
        for name in PROFILE_ATTRIBUTES:
            setattr(self, name, getattr(profile, name))
        if groups is not None:
            self.groups = list(groups)


def new_user(organization_id: str, connection_id: str | None, subject: str | None, now: datetime) -> User:
    return User(id=str(uuid.uuid4()), organization_id=organization_id, connection_id=connection_id,
                subject=subject, created_at=now, updated_at=now)


class LoginRefused(KeyhallError):
    """The IdP authenticated the person, but Keyhall's policy refuses the sign-in."""

    code = "login_refused"

    def __init__(self, message: str, *, reason: str):
        super().__init__(message, details={"reason": reason})
        self.reason = reason
