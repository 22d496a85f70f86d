"""API keys as the core sees them: an id, a role in one organization, a hashed secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from keyhall.core.vocabulary import Role


@dataclass
class ApiKey:
    id: str
    organization_id: str | None  # None: instance-admin key
    role: Role | None
    secret_hash: str
    name: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.min)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def instance_admin(self) -> bool:
        return self.organization_id is None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
