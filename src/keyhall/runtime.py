"""The long-lived parts of a running Keyhall, built once from settings and handed to surfaces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from keyhall.core.ports import TxtLookup
from keyhall.idp.inspector import NetworkInspector
from keyhall.idp.oidc_rp import JwksCache
from keyhall.login.oidc import RelyingParty
from keyhall.security.outbound import OutboundPolicy
from keyhall.security.rate_limit import CounterStore, Limit, RateLimiter
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
    relying_party: RelyingParty
    password_limit: Limit = field(default_factory=lambda: Limit(requests=10, window_seconds=300))
    clock: Callable[[], datetime] = field(default=utcnow)
    # Webhook URLs: the same SSRF guard as IdP URLs (KEYHALL_ALLOW_INSECURE_IDP_URLS), their own timeout.
    webhook_policy: OutboundPolicy = field(default_factory=OutboundPolicy)

    def txt_lookup(self) -> TxtLookup:
        """The TXT look-up domain checks use: ``KEYHALL_DNS_RESOLVER`` (or the system's), bounded by
        the IdP timeout; nothing cached, so a record published a moment ago is seen."""
        # Imported here: dnspython (some 3 MB per worker) loads with the first domain check.
        from keyhall.idp.dns import TxtResolver

        return TxtResolver(self.settings.dns_resolver, timeout=self.settings.idp_timeout_seconds)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        box = secret_box_for(settings)
        policy = OutboundPolicy(
            allow_insecure=settings.allow_insecure_idp_urls,
            timeout=settings.idp_timeout_seconds,
            max_bytes=settings.idp_max_document_bytes,
            max_concurrent_calls=settings.idp_max_concurrent_calls,
        )
        database = Database(settings.resolved_database_url, box, timeout=settings.database_timeout_seconds)
        relying_party = RelyingParty(public_url=settings.public_url, policy=policy, jwks_cache=JwksCache(),
                                     clock_skew_seconds=settings.clock_skew_seconds)
        store: CounterStore = SqlCounterStore(database.engine)
        if settings.redis_url:
            from keyhall.security.redis_counters import RedisCounterStore

            store = RedisCounterStore(settings.redis_url)
        webhook_policy = OutboundPolicy(allow_insecure=settings.allow_insecure_idp_urls,
                                        timeout=settings.webhook_timeout_seconds, max_redirects=0)
        return cls(settings=settings, database=database, box=box, inspector=NetworkInspector(policy),
                   limiter=RateLimiter(store), relying_party=relying_party, webhook_policy=webhook_policy)
