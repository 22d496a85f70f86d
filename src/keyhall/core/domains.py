"""Email domains an organization claims, and their DNS verification state."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from keyhall.core.vocabulary import DomainStatus

CHALLENGE_LABEL = "_keyhall-challenge"
CHALLENGE_PREFIX = "keyhall-verification="

PUBLIC_EMAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "yahoo.com", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "proton.me",
        "protonmail.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com", "zoho.com",
        "yandex.com", "yandex.ru", "mail.ru", "qq.com", "163.com", "126.com", "fastmail.com",
        "hey.com", "tutanota.com", "duck.com",
    }
)


@dataclass
class Domain:
    id: str
    organization_id: str
    name: str
    verification_token: str
    status: DomainStatus = DomainStatus.PENDING
    last_checked_at: datetime | None = None
    last_error: str | None = None
    verified_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.min)

    @property
    def record_name(self) -> str:
        return f"{CHALLENGE_LABEL}.{self.name}"

    @property
    def record_value(self) -> str:
        return f"{CHALLENGE_PREFIX}{self.verification_token}"


def new_domain(organization_id: str, name: str, now: datetime, token: str | None = None) -> Domain:
    return Domain(
        id=str(uuid.uuid4()),
        organization_id=organization_id,
        name=name,
        verification_token=token or secrets.token_urlsafe(24),
        created_at=now,
    )
