"""The long-lived parts of a running Keyhall, built once from settings and handed to surfaces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from keyhall.idp.inspector import NetworkInspector
from keyhall.security.outbound import OutboundPolicy
from keyhall.security.rate_limit import RateLimiter
from keyhall.security.secrets import FileSecretBox, SecretBox, parse_key_list
from keyhall.settings import Settings
from keyhall.storage.counters import SqlCounterStore
from keyhall.storage.database import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


def secret_box_for(settings: Settings) -> SecretBox:
    if settings.secret_keys:
        return SecretBox(parse_key_list(settings.secret_keys))
    return FileSecretBox(settings.secret_keys_file)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    box: SecretBox
    inspector: NetworkInspector
    limiter: RateLimiter
    clock: Callable[[], datetime] = field(default=utcnow)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        box = secret_box_for(settings)
        policy = OutboundPolicy(
            allow_insecure=settings.allow_insecure_idp_urls,
            timeout=settings.idp_timeout_seconds,
            max_bytes=settings.idp_max_document_bytes,
        )
        database = Database(settings.resolved_database_url, box)
        return cls(settings=settings, database=database, box=box, inspector=NetworkInspector(policy),
                   limiter=RateLimiter(SqlCounterStore(database.engine)))
