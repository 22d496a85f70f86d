"""Typed settings, read once from ``KEYHALL_*`` environment variables (and a ``.env`` file).

Settings are built by ``load_settings()`` and passed down; nothing reads the environment at
import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from keyhall.protocols.dns import parse_server
from keyhall.security.forwarded import IPNetwork, parse_trusted_proxies


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEYHALL_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    secret_keys: str | None = Field(default=None, repr=False)
    redis_url: str | None = None
    allow_insecure_idp_urls: bool = False
    # Development mode: the test IdP (/_dev/idp/) and example product (/_dev/app), a seeded demo
    # tenant; implies allow_insecure_idp_urls (the test IdP is this server, on http and loopback).
    dev: bool = False
    max_body_bytes: int = 1_048_576
    idp_timeout_seconds: float = 5.0
    idp_max_document_bytes: int = 1_048_576
    # Calls in flight from one instance to one IdP (scheme, host and port); past it a call fails at once.
    idp_max_concurrent_calls: int = Field(default=10, ge=1)
    # Every database wait (statement, lock, pool checkout, silent server; SQLite's busy wait) ends here.
    database_timeout_seconds: float = Field(default=5.0, gt=0, le=3600)
    log_level: str = "INFO"
    allow_unverified_domains: bool = False  # development only: route email domains before DNS proof
    clock_skew_seconds: int = 60  # tolerance for IdP token and assertion times
    login_rate_limit_per_minute: int = 600  # per client address and sign-in endpoint; 0 turns it off
    api_rate_limit_per_minute: int = 1200  # per API key (or client IP without one); 0 turns it off
    dns_resolver: str | None = None  # host:port of the resolver used for domain checks
    domain_check_interval_seconds: float = 600  # background DNS re-check of claimed domains; 0 turns it off
    # The setup portal: an unopened link works this long; the session it opens lasts portal_session_ttl_seconds.
    portal_link_ttl_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    portal_session_ttl_seconds: int = Field(default=3600, ge=300, le=24 * 3600)
    metrics_token: str | None = Field(default=None, repr=False)  # GET /metrics answers this bearer token only
    metrics_port: int | None = None  # `keyhall serve` also serves /metrics on this port, without a token
    metrics_host: str = "127.0.0.1"  # the address of that metrics port
    # A sign-in's refresh tokens rotate at most this long after the sign-in, however often they are used.
    refresh_token_max_lifetime_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    # Peers whose X-Forwarded-For is believed (comma-separated IPs/CIDRs); parsed once, here.
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    purge_interval_seconds: float = 3600  # background purge of expired sign-in state; 0 turns it off
    # Back-channel logout tokens waiting for delivery are sent (and failed ones retried) this often; 0 turns it off.
    backchannel_logout_interval_seconds: float = 5
    audit_retention_days: int = Field(default=365, ge=0)  # audit events older than this are purged; 0 keeps all
    # The event log (GET /v1/events) is replayable this long; older events (and their deliveries) are
    # purged. At least 30; 0 keeps them all.
    event_retention_days: int = Field(default=30, ge=0)
    # Sign-in traces (test sign-ins and failed sign-ins) older than this are purged; 0 keeps them all.
    trace_retention_days: int = Field(default=7, ge=0)
    # Background refresh of SAML metadata fetched by URL and of certificate expiry notices; 0 turns it off.
    metadata_refresh_seconds: float = Field(default=3600, ge=0)
    # A signing certificate the IdP's metadata no longer lists stays trusted this long.
    certificate_overlap_days: float = Field(default=7, ge=0)
    webhook_poll_interval_seconds: float = 1.0  # how often each instance looks for due deliveries; 0 turns it off
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)  # connect and read, per delivery attempt
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)  # the first retry's wait; doubled each time
    # Retries go on (exponential backoff, capped at 2 h) until an attempt fails this long after the first.
    webhook_retry_period_seconds: float = Field(default=24 * 3600, gt=0)
    # After a secret rotation, the previous secret keeps signing beside the new one this long.
    webhook_secret_overlap_seconds: float = Field(default=24 * 3600, ge=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: Any) -> Any:
        if value is None or isinstance(value, str) or (isinstance(value, list | tuple) and all(
                isinstance(v, str) for v in value)):
            return parse_trusted_proxies(value)
        return value

    @field_validator("event_retention_days")
    @classmethod
    def _check_event_retention(cls, value: int) -> int:
        if 0 < value < 30:
            raise ValueError("events are kept at least 30 days (0 keeps them all)")
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("dns_resolver")
    @classmethod
    def _check_dns_resolver(cls, value: str | None) -> str | None:
        if value:
            parse_server(value)  # ValueError: host must be an IP address, port 1-65535
        return value

    @model_validator(mode="after")
    def _development_mode_reaches_its_own_idp(self) -> Settings:
        if self.dev:
            self.allow_insecure_idp_urls = True
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'keyhall.db').resolve()}"

    @property
    def secret_keys_file(self) -> Path:
        return self.data_dir / "secret_keys"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and ``.env``); keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
