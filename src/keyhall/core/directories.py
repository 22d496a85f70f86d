"""Directories: an organization's SCIM 2.0 sources of users and groups (pure rules and ports).

A directory is what an organization's IdP (Okta, Entra ID, Google, JumpCloud, ...) pushes people
into. Its users are the organization's users (rows of ``users`` with ``directory_id`` set); its
groups feed those users' ``groups`` claim. The directory authenticates with a bearer token of 256
random bits, shown once and kept only as a SHA-256 (``security.api_keys.hash_secret``).

This module holds the entities and the pure rules (the storage ports are in ``core.ports``); the
storage-bound services are ``directory_service`` (the native API) and ``directory_sync`` (what the SCIM surface calls).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from keyhall.errors import InvalidInput
from keyhall.security.api_keys import hash_secret

TOKEN_PREFIX = "khd_"
MAX_DIRECTORIES_PER_ORG = 20
MAX_TOKEN_LENGTH = 200  # longer is not a token Keyhall issued: refused before hashing


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


def groups_claim(group_names: Collection[str], group_mappings: Sequence[Mapping[str, str]]) -> list[str]:
    """The ``groups`` a directory user's tokens carry: their directory groups' display names, renamed
    and filtered by the sign-in connection's group mappings when it has some. Sign-in computes it,
    and so does every SCIM change of the user's memberships (``directory_sync.Sync``)."""
    if group_mappings:
        wanted = set(group_names)
        return sorted({m["group"] for m in group_mappings if m["idp_group"] in wanted})
    return sorted(set(group_names))


@dataclass(frozen=True)
class Counts:
    users: int
    groups: int
