"""Managing webhook endpoints (instance admins only) and delivering to them.

The management functions each run in one unit of work, audited. An endpoint's URL passes the
SSRF guard (``check_url``, handed in by the surface) before it is stored; the delivery itself goes
through the guarded transport again, so a host that later resolves to a private address is refused
at send time too. The secret is answered once, on creation and on rotation.

``deliver_due`` is one pass of the background deliverer: claim due deliveries (a committed,
conditional write per delivery, with a lease), POST each with no transaction open, record the
outcome only while the lease is still held. A dead instance's leases run out and another instance
takes the deliveries over: delivery is at least once, and one row per event and endpoint means no
event is sent twice to an endpoint by instances that are alive.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyhall.core import audit
from keyhall.core.access import require_instance_admin
from keyhall.core.connection_service import Context
from keyhall.core.events import EVENT_TYPES, OPEN_PREFIXES
from keyhall.core.ports import UnitOfWork
from keyhall.core.webhooks import (
    MAX_DESCRIPTION,
    MAX_URL,
    AttemptResult,
    Claimed,
    Delivery,
    WebhookEndpoint,
    WebhookStore,
    after_attempt,
    check_event_types,
    new_endpoint,
    rotate_secret,
)
from keyhall.errors import Conflict, InvalidInput, NotFound
from keyhall.protocols import standard_webhooks

UrlCheck = Callable[[str], None]
"""Raises (UnsafeURL, InvalidInput) when a URL may not receive webhooks."""
Sender = Callable[[str, bytes, dict[str, str]], AttemptResult]
"""POSTs a body with headers to a URL; answers what came of it (never raises for the endpoint's faults)."""


@dataclass(frozen=True)
class EndpointChanges:
    url: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    enabled: bool | None = None
    fields: frozenset[str] = frozenset()  # the names the caller sent (``description: null`` clears it)


def _check_url(url: str, check_url: UrlCheck) -> str:
    text = url.strip()
    if not text or len(text) > MAX_URL:
        raise InvalidInput(f"url: must be 1-{MAX_URL} characters", field="url")
    check_url(text)
    return text


def _check_description(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_DESCRIPTION:
        raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters", field="description")
    return value or None


def _types(values: Sequence[str]) -> list[str]:
    return check_event_types(values, EVENT_TYPES, OPEN_PREFIXES)


def _snapshot(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"url": endpoint.url, "description": endpoint.description, "event_types": list(endpoint.event_types),
            "enabled": endpoint.enabled}


def _audit(uow: UnitOfWork, ctx: Context, action: str, endpoint_id: str, changes: dict[str, Any]) -> None:
    uow.audit.add(audit.event(organization_id=None, actor=ctx.principal.actor, action=action,
                              target_type="webhook_endpoint", target_id=endpoint_id, request_id=ctx.request_id,
                              now=ctx.now, changes=changes))


def create_endpoint(uow: UnitOfWork, ctx: Context, *, url: str, description: str | None,
                    event_types: Sequence[str], enabled: bool, check_url: UrlCheck) -> WebhookEndpoint:
    """A new endpoint; its ``secret`` is in the answer, the only time it is shown."""
    require_instance_admin(ctx.principal)
    endpoint = new_endpoint(_check_url(url, check_url), description=_check_description(description),
                            event_types=_types(event_types), enabled=enabled, now=ctx.now)
    uow.webhooks.add_endpoint(endpoint)
    _audit(uow, ctx, "webhook_endpoint.created", endpoint.id, {**audit.diff({}, _snapshot(endpoint)),
                                                               "secret": {"from": None, "to": "set"}})
    uow.commit()
    return endpoint


def get_endpoint(webhooks: WebhookStore, ctx: Context, endpoint_id: str) -> WebhookEndpoint:
    require_instance_admin(ctx.principal)
    endpoint = webhooks.get_endpoint(endpoint_id[:36])
    if endpoint is None:
        raise NotFound("webhook endpoint not found", details={"id": endpoint_id})
    return endpoint


def list_endpoints(webhooks: WebhookStore, ctx: Context, *, limit: int,
                   cursor: str | None) -> tuple[list[WebhookEndpoint], str | None]:
    require_instance_admin(ctx.principal)
    return webhooks.list_endpoints(limit=limit, cursor=cursor)


def update_endpoint(uow: UnitOfWork, ctx: Context, endpoint_id: str, changes: EndpointChanges, *,
                    check_url: UrlCheck) -> WebhookEndpoint:
    endpoint = get_endpoint(uow.webhooks, ctx, endpoint_id)
    before = _snapshot(endpoint)
    if "url" in changes.fields:
        if changes.url is None:
            raise InvalidInput("url: cannot be null", field="url")
        endpoint.url = _check_url(changes.url, check_url)
    if "description" in changes.fields:
        endpoint.description = _check_description(changes.description)
    if "event_types" in changes.fields:
        endpoint.event_types = _types(changes.event_types or [])
    if "enabled" in changes.fields:
        if changes.enabled is None:
            raise InvalidInput("enabled: cannot be null", field="enabled")
        endpoint.enabled = changes.enabled
    diff = audit.diff(before, _snapshot(endpoint))
    if not diff:
        return endpoint
    endpoint.updated_at = ctx.now
    uow.webhooks.save_endpoint(endpoint)
    _audit(uow, ctx, "webhook_endpoint.updated", endpoint.id, diff)
    uow.commit()
    return endpoint


def rotate_endpoint_secret(uow: UnitOfWork, ctx: Context, endpoint_id: str,
                           overlap: timedelta) -> tuple[WebhookEndpoint, str]:
    """A new secret (answered once); the previous one keeps signing beside it for ``overlap``."""
    endpoint = get_endpoint(uow.webhooks, ctx, endpoint_id)
    secret = rotate_secret(endpoint, ctx.now, overlap)
    uow.webhooks.save_endpoint(endpoint)
    _audit(uow, ctx, "webhook_endpoint.secret_rotated", endpoint.id,
           {"secret": {"from": "set", "to": "changed"},
            "previous_secret_expires_at": endpoint.previous_secret_expires_at.isoformat()
            if endpoint.previous_secret_expires_at else None})
    uow.commit()
    return endpoint, secret


def delete_endpoint(uow: UnitOfWork, ctx: Context, endpoint_id: str) -> None:
    """Remove the endpoint and its delivery log; nothing more is sent to it."""
    endpoint = get_endpoint(uow.webhooks, ctx, endpoint_id)
    uow.webhooks.delete_endpoint(endpoint.id)
    _audit(uow, ctx, "webhook_endpoint.deleted", endpoint.id, audit.diff(_snapshot(endpoint), {}))
    uow.commit()


def list_deliveries(webhooks: WebhookStore, ctx: Context, endpoint_id: str, *, limit: int, cursor: str | None,
                    status: str | None = None) -> tuple[list[Delivery], str | None]:
    endpoint = get_endpoint(webhooks, ctx, endpoint_id)
    return webhooks.list_deliveries(endpoint.id, limit=limit, cursor=cursor, status=status)


def redeliver(uow: UnitOfWork, ctx: Context, endpoint_id: str, delivery_id: str) -> Delivery:
    """Send the delivery again as soon as possible (whatever its state), retries afresh."""
    endpoint = get_endpoint(uow.webhooks, ctx, endpoint_id)
    delivery = uow.webhooks.get_delivery(endpoint.id, delivery_id[:36])
    if delivery is None:
        raise NotFound("delivery not found", details={"id": delivery_id})
    if not uow.webhooks.reschedule(delivery.id, ctx.now):
        raise Conflict("this delivery is being attempted right now; try again when the attempt ends")
    _audit(uow, ctx, "webhook_delivery.redelivered", endpoint.id,
           {"delivery_id": delivery.id, "event_id": delivery.event_id, "status": {"from": str(delivery.status),
                                                                                 "to": "pending"}})
    uow.commit()
    found = uow.webhooks.get_delivery(endpoint.id, delivery.id)
    assert found is not None
    return found


# --- delivering ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the deliverer retries (``KEYHALL_WEBHOOK_*``)."""

    retry_base: timedelta
    retry_period: timedelta
    lease: timedelta
    batch: int = 20


def attempt(claimed: Claimed, send: Sender, now: datetime) -> AttemptResult:
    """Sign and POST one claimed delivery (no database work: none may be open while it runs)."""
    headers = {"content-type": "application/json",
               **standard_webhooks.sign_headers(claimed.secrets, claimed.delivery.id, now, claimed.body)}
    return send(claimed.url, claimed.body, headers)


def deliver_due(units: Callable[[], AbstractContextManager[UnitOfWork]], send: Sender,
                clock: Callable[[], datetime], policy: DeliveryPolicy, *, stop: Callable[[], bool] = lambda: False,
                rng: random.Random | None = None) -> dict[str, int]:
    """One pass: claim what is due (committed at once), attempt each with no transaction open,
    store each outcome in a transaction of its own. Counts of ``attempted``, ``succeeded``,
    ``retrying``, ``failed`` and ``lost`` (an outcome not stored: the lease had run out)."""
    counts = {"attempted": 0, "succeeded": 0, "retrying": 0, "failed": 0, "lost": 0}
    with units() as uow:
        claimed = uow.webhooks.claim_due(clock(), policy.lease, limit=policy.batch)
        uow.commit()
    for item in claimed:
        if stop():
            break  # the rest are taken again when their leases run out
        result = attempt(item, send, clock())
        counts["attempted"] += 1
        delivery = after_attempt(item.delivery, result, clock(), base=policy.retry_base,
                                 retry_period=policy.retry_period, rng=rng)
        with units() as uow:
            stored = uow.webhooks.finish_attempt(item, delivery)
            uow.commit()
        if not stored:
            counts["lost"] += 1
            continue
        counts[{"succeeded": "succeeded", "failed": "failed"}.get(str(delivery.status), "retrying")] += 1
    return counts
