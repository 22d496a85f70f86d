"""Organizations: the customers whose people sign in through their own identity provider."""

from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from keyhall.errors import InvalidInput

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
NAME_MAX = 255


@dataclass
class Organization:
    id: str
    slug: str
    name: str
    admins_may_configure_sso: bool = False
    break_glass_email: str | None = None
    short_id: str = ""
    default_connection_id: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.min)
    updated_at: datetime = field(default_factory=lambda: datetime.min)


SHORT_ID_ALPHABET = string.ascii_lowercase + string.digits
SHORT_ID_LENGTH = 21


def new_short_id() -> str:
    """A compact, random, URL-safe organization id (≤ 21 characters, as tenant ids often must be)."""
    return "".join(secrets.choice(SHORT_ID_ALPHABET) for _ in range(SHORT_ID_LENGTH))


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:63].strip("-") or "org"


def validate_slug(slug: str) -> str:
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            "slug must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            field="slug",
        )
    if is_uuid(slug):
        raise InvalidInput("slug must not look like a UUID", field="slug")
    return slug


def validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise InvalidInput(f"name must be 1-{NAME_MAX} characters", field="name")
    return name


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def new_organization(name: str, slug: str | None, now: datetime) -> Organization:
    name = validate_name(name)
    return Organization(
        id=str(uuid.uuid4()),
        slug=validate_slug(slug if slug is not None else slugify(name)),
        name=name,
        short_id=new_short_id(),
        created_at=now,
        updated_at=now,
    )
