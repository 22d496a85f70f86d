"""Directories: an organization's SCIM 2.0 sources of users and groups (pure rules and ports).

A directory is what an organization's IdP (Okta, Entra ID, Google, JumpCloud, ...) pushes people
into. Its users are the organization's users (rows of ``users`` with ``directory_id`` set); its
groups feed those users' ``groups`` claim. The directory authenticates with a bearer token of 256
random bits, shown once and kept only as a SHA-256 (``security.api_keys.hash_secret``).

This module holds the entities, the pure rules and the storage ports; the storage-bound services
are ``directory_service`` (the native API) and ``directory_sync`` (what the SCIM surface calls).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from keyhall.core.ports import Slice
from keyhall.errors import InvalidInput
from keyhall.protocols.scim.filters import Predicate
from keyhall.security.api_keys import hash_secret, secret_matches

TOKEN_PREFIX = "khd_"
MAX_DIRECTORIES_PER_ORG = 20


class DirectoryProvider(StrEnum):
    OKTA = "okta"
    ENTRA = "entra"
    GOOGLE = "google"
    JUMPCLOUD = "jumpcloud"
    GENERIC = "generic"


@dataclass
class Directory:
    id: str
    organization_id: str
    name: str
    provider: DirectoryProvider
    token_hash: str
    token_hint: str  # the token's last characters, to tell tokens apart in a list
    created_at: datetime
    updated_at: datetime
    token_rotated_at: datetime
    last_sync_at: datetime | None = None
    version: int = 1

    @property
    def actor(self) -> str:
        """Who the audit trail names for changes the directory makes."""
        return f"directory:{self.id}"


@dataclass
class DirectoryUser:
    """A user a directory provisioned: a row of ``users`` seen through SCIM.

    ``attributes`` is the SCIM resource as stored (core User + enterprise extension, without
    ``id``, ``meta``, ``groups`` and ``password``); the columns beside it are what sign-in and
    queries use."""

    id: str
    organization_id: str
    directory_id: str
    user_name: str
    external_id: str | None
    active: bool
    attributes: dict[str, Any]
    email: str | None = None
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.min)
    updated_at: datetime = field(default_factory=lambda: datetime.min)
    version: int = 1


@dataclass
class DirectoryGroup:
    id: str
    organization_id: str
    directory_id: str
    display_name: str
    external_id: str | None
    attributes: dict[str, Any]
    created_at: datetime = field(default_factory=lambda: datetime.min)
    updated_at: datetime = field(default_factory=lambda: datetime.min)
    version: int = 1


@dataclass(frozen=True)
class Member:
    """A group member as SCIM shows it: the user's id and display name."""

    id: str
    display: str | None


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_hash: str

    @property
    def hint(self) -> str:
        return self.token[-4:]


def issue_token() -> IssuedToken:
    """A fresh bearer token: 256 random bits (``token_urlsafe(32)``), with a recognisable prefix."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return IssuedToken(token=token, token_hash=hash_secret(token))


def token_matches(directory: Directory, token: str | None) -> bool:
    """Constant-time check of a presented bearer token against the stored hash."""
    if not token or len(token) > 200:
        return False
    return secret_matches(token, directory.token_hash)


def new_directory(organization_id: str, name: str, provider: DirectoryProvider, token: IssuedToken,
                  now: datetime) -> Directory:
    return Directory(id=str(uuid.uuid4()), organization_id=organization_id, name=name, provider=provider,
                     token_hash=token.token_hash, token_hint=token.hint, created_at=now, updated_at=now,
                     token_rotated_at=now)


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidInput("name: must be 1 to 128 characters", field="name")
    return name


def groups_claim(group_names: Collection[str]) -> list[str]:
    """The ``groups`` a directory user's sign-in carries: their directory groups' display names."""
    return sorted(set(group_names))


@dataclass(frozen=True)
class Counts:
    users: int
    groups: int


class DirectoryStore(Protocol):
    def get(self, directory_id: str) -> Directory | None: ...
    def for_organization(self, organization_id: str) -> list[Directory]: ...
    def counts(self, directory_ids: Sequence[str]) -> dict[str, Counts]: ...
    def add(self, directory: Directory) -> None: ...
    def save(self, directory: Directory) -> None: ...
    def touch(self, directory_id: str, now: datetime) -> None:
        """Record a sync (``last_sync_at``) without bumping the directory's version."""
        ...
    def delete(self, directory_id: str) -> None: ...


class DirectoryUserStore(Protocol):
    def get(self, directory_id: str, user_id: str) -> DirectoryUser | None: ...
    def user_name_taken(self, directory_id: str, user_name: str, *, exclude_id: str | None) -> bool: ...
    def add(self, user: DirectoryUser) -> None: ...
    def save(self, user: DirectoryUser, *, expected_version: int) -> bool: ...
    def delete(self, user_id: str) -> None: ...
    def ids(self, directory_id: str) -> list[str]: ...
    def existing(self, directory_id: str, user_ids: Collection[str]) -> dict[str, str | None]:
        """Of ``user_ids``, those of the directory's users, with their display names."""
        ...
    def list_slice(self, directory_id: str, where: Predicate | None, *, offset: int,
                   limit: int) -> Slice[DirectoryUser]: ...
    def groups_of(self, user_ids: Collection[str]) -> dict[str, list[tuple[str, str]]]:
        """Per user, the (group id, display name) of the groups they belong to."""
        ...
    def set_groups_claim(self, user_id: str, groups: list[str]) -> None: ...


class DirectoryGroupStore(Protocol):
    def get(self, directory_id: str, group_id: str) -> DirectoryGroup | None: ...
    def add(self, group: DirectoryGroup) -> None: ...
    def save(self, group: DirectoryGroup, *, expected_version: int) -> bool: ...
    def delete(self, group_id: str) -> None: ...
    def list_slice(self, directory_id: str, where: Predicate | None, *, offset: int,
                   limit: int) -> Slice[DirectoryGroup]: ...
    def members(self, group_ids: Collection[str]) -> dict[str, list[Member]]: ...
    def member_ids(self, group_id: str) -> set[str]: ...
    def add_members(self, group_id: str, user_ids: Collection[str], displays: Mapping[str, str]) -> None:
        """Insert the memberships in one statement (``displays``: what the directory called them)."""
        ...
    def remove_members(self, group_id: str, user_ids: Collection[str]) -> None: ...
