"""Webhook endpoints and their deliveries: the entities and the pure rules (no storage, no HTTP).

An endpoint is a URL that receives the events it subscribed to (``event_types``: exact types,
``prefix.*`` patterns, or nothing for every event), signed per Standard Webhooks
(``keyhall.protocols.standard_webhooks``) with its secret. Rotating the secret keeps the previous
one signing beside the new one for an overlap, so receivers can switch without losing a message.

A delivery is one event for one endpoint (one row per pair, whatever the number of instances).
It is ``pending`` until an attempt gets a 2xx answer (``succeeded``) or retries run out
(``failed``): after each failed attempt the next is scheduled by ``next_attempt_delay``
(exponential backoff with jitter), for at least ``retry_period`` after the first attempt.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from keyhall.errors import InvalidInput
from keyhall.protocols import standard_webhooks

MAX_EVENT_TYPES = 50
MAX_DESCRIPTION = 512
MAX_URL = 2048
#: The longest wait between two attempts, however many failed before.
MAX_RETRY_INTERVAL = timedelta(hours=2)
#: How much of a response body the delivery log keeps.
EXCERPT_CHARS = 512
MAX_ERROR_CHARS = 512

_TYPE_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class WebhookEndpoint:
    id: str
    url: str
    description: str | None
    event_types: list[str]  # empty: every event
    enabled: bool
    secret: str  # ``whsec_...``; write-only outside the core
    created_at: datetime
    updated_at: datetime
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None

    def accepts(self, event_type: str) -> bool:
        return type_matches(self.event_types, event_type)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets each message is signed with now: the current one, and the previous one
        while its overlap lasts."""
        found = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and now < self.previous_secret_expires_at:
            found.append(self.previous_secret)
        return found


@dataclass(frozen=True)
class Subscription:
    """What an enabled endpoint wants (no secret: deciding who gets an event needs none)."""

    endpoint_id: str
    event_types: tuple[str, ...]

    def accepts(self, event_type: str) -> bool:
        return type_matches(self.event_types, event_type)


@dataclass
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    response_excerpt: str | None = None
    delivered_at: datetime | None = None
    lease_until: datetime | None = None
    lease_token: str | None = field(default=None, repr=False)
    retry_from: datetime | None = None  # retries run out ``retry_period`` after this (creation, or a redeliver)

    def in_flight(self, now: datetime) -> bool:
        return self.lease_until is not None and self.lease_until > now


@dataclass(frozen=True)
class Claimed:
    """A delivery an instance holds the lease of, with what it needs to send it."""

    delivery: Delivery
    url: str
    secrets: list[str]
    body: bytes
    lease_token: str


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came to: a status (and a body excerpt), or an error without one."""

    status_code: int | None
    excerpt: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookStore(Protocol):
    """Storage of endpoints and deliveries (``keyhall.storage.webhook_repositories``)."""

    def add_endpoint(self, endpoint: WebhookEndpoint) -> None: ...
    def save_endpoint(self, endpoint: WebhookEndpoint) -> None: ...
    def delete_endpoint(self, endpoint_id: str) -> None: ...
    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None: ...
    def list_endpoints(self, *, limit: int, cursor: str | None) -> tuple[list[WebhookEndpoint], str | None]: ...
    def subscriptions(self) -> list[Subscription]:
        """Those of every enabled endpoint."""
        ...
    def add_delivery(self, delivery: Delivery) -> None: ...
    def get_delivery(self, endpoint_id: str, delivery_id: str) -> Delivery | None: ...
    def list_deliveries(self, endpoint_id: str, *, limit: int, cursor: str | None,
                        status: str | None = None) -> tuple[list[Delivery], str | None]: ...
    def reschedule(self, delivery_id: str, now: datetime) -> bool:
        """Make the delivery pending, due now, with its attempts and retry period started afresh,
        unless an attempt holds it; False when one does."""
        ...
    def claim_due(self, now: datetime, lease: timedelta, *, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due pending deliveries of enabled endpoints to the caller (each
        claimed by a conditional write, so no two instances hold the same one), counting the
        attempt. The caller commits at once."""
        ...
    def finish_attempt(self, claimed: Claimed, delivery: Delivery) -> bool:
        """Store the outcome of an attempt if the caller still holds the lease (False otherwise)."""
        ...
    def all_sealed_secrets(self) -> list[tuple[str, str]]: ...
    def replace_sealed_secret(self, endpoint_id: str, blob: str) -> None: ...


# --- pure rules ------------------------------------------------------------------------------------


def check_event_types(values: Sequence[str], known: frozenset[str], open_prefixes: tuple[str, ...]) -> list[str]:
    """``values`` de-duplicated, each an event type Keyhall emits, a ``prefix.*`` pattern, or
    ``*``; InvalidInput naming ``event_types`` otherwise."""
    if len(values) > MAX_EVENT_TYPES:
        raise InvalidInput(f"event_types: at most {MAX_EVENT_TYPES}", field="event_types")
    kept: list[str] = []
    for value in values:
        text = value.strip()
        if not _TYPE_PATTERN.match(text):
            raise InvalidInput(f"event_types: {text!r} is not an event type or a 'prefix.*' pattern",
                               field="event_types")
        if not text.endswith("*") and text not in known and not text.startswith(open_prefixes):
            raise InvalidInput(f"event_types: {text!r} is not an event type Keyhall emits", field="event_types")
        if text not in kept:
            kept.append(text)
    return kept


def type_matches(patterns: Sequence[str], event_type: str) -> bool:
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def new_endpoint(url: str, *, description: str | None, event_types: list[str], enabled: bool,
                 now: datetime) -> WebhookEndpoint:
    return WebhookEndpoint(id=str(uuid.uuid4()), url=url, description=description, event_types=event_types,
                           enabled=enabled, secret=standard_webhooks.new_secret(), created_at=now, updated_at=now)


def rotate_secret(endpoint: WebhookEndpoint, now: datetime, overlap: timedelta) -> str:
    """Give the endpoint a new secret; the current one keeps signing for ``overlap``."""
    endpoint.previous_secret = endpoint.secret if overlap > timedelta(0) else None
    endpoint.previous_secret_expires_at = now + overlap if overlap > timedelta(0) else None
    endpoint.secret = standard_webhooks.new_secret()
    endpoint.updated_at = now
    return endpoint.secret


def new_delivery(endpoint_id: str, event_id: str, event_type: str, now: datetime) -> Delivery:
    return Delivery(id=str(uuid.uuid4()), endpoint_id=endpoint_id, event_id=event_id, event_type=event_type,
                    status=DeliveryStatus.PENDING, created_at=now, next_attempt_at=now, retry_from=now)


def next_attempt_delay(failed_attempts: int, base: timedelta, *, rng: random.Random | None = None,
                       cap: timedelta = MAX_RETRY_INTERVAL) -> timedelta:
    """How long to wait after the ``failed_attempts``-th failure: ``base * 2**(n-1)`` capped at
    ``cap``, with "equal jitter" (between half and all of it) so that many deliveries failing
    together do not retry in lockstep."""
    if failed_attempts < 1:
        return timedelta(0)
    exponent = min(failed_attempts - 1, 40)
    full = min(base * (1 << exponent), cap)
    share = rng.random() if rng is not None else random.random()
    return full / 2 + full / 2 * share


def after_attempt(delivery: Delivery, result: AttemptResult, now: datetime, *, base: timedelta,
                  retry_period: timedelta, rng: random.Random | None = None) -> Delivery:
    """The delivery once an attempt came to ``result``: succeeded; or failed for good once an
    attempt fails ``retry_period`` or more after ``retry_from``; or pending again,
    due after the backoff."""
    delivery.last_attempt_at = now
    delivery.last_status_code = result.status_code
    delivery.last_error = _clip(result.error, MAX_ERROR_CHARS)
    delivery.response_excerpt = _clip(result.excerpt, EXCERPT_CHARS)
    delivery.lease_until = delivery.lease_token = None
    if result.ok:
        delivery.status, delivery.delivered_at = DeliveryStatus.SUCCEEDED, now
    elif now - (delivery.retry_from or delivery.created_at) >= retry_period:
        delivery.status = DeliveryStatus.FAILED
    else:
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = now + next_attempt_delay(max(delivery.attempts, 1), base, rng=rng)
    return delivery


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"
