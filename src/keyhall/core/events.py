"""Events: what changed, in the order it committed, for ``GET /v1/events`` and webhooks.

An event is written by ``emit`` through the unit of work of the change it describes, so it
commits with that change or not at all: nothing is announced that did not happen, and nothing
that happened goes unannounced. ``emit`` also queues one delivery per subscribed webhook endpoint
in the same transaction (``keyhall.core.webhooks``). The log is ordered by ``sequence`` (storage
hands out numbers in commit order), which is the ``after`` cursor of ``GET /v1/events``; it is
kept ``KEYHALL_EVENT_RETENTION_DAYS`` (at least 30 days).

An event's ``data`` is a small public description of the resource (``connection_data``,
``domain_data``, ``user_data``): ids, names and states, never secrets. Other parts of Keyhall
(SCIM directories, sessions, certificates) announce their changes with the same ``emit``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from keyhall.core.access import Principal, require_instance_admin
from keyhall.core.audit import mask_secrets
from keyhall.core.connections import Connection
from keyhall.core.domains import Domain
from keyhall.core.users import User
from keyhall.core.webhooks import WebhookStore, new_delivery
from keyhall.errors import InvalidInput

EVENT_TYPES = frozenset({
    "connection.created", "connection.updated", "connection.deleted", "connection.verified",
    "connection.deactivated", "connection.certificate.expiring",
    "domain.verified", "domain.unverified",
    "user.created", "user.updated", "user.disabled", "user.deleted",
    "session.ended", "organization.deleted",
})
#: Families whose exact types their emitters define (SCIM: ``directory.user.created``, ...).
OPEN_PREFIXES = ("directory.",)
MAX_LIMIT = 200


@dataclass
class Event:
    id: str
    type: str
    organization_id: str | None
    data: dict[str, Any]
    created_at: datetime
    sequence: int | None = field(default=None)  # given by storage when the event is appended

    def payload(self) -> dict[str, Any]:
        """The body webhooks receive (and ``GET /v1/events`` lists, with ``sequence``)."""
        return {"id": self.id, "type": self.type, "created_at": _iso(self.created_at),
                "organization_id": self.organization_id, "data": self.data}

    def body(self) -> bytes:
        """The exact bytes a webhook receives (and that are signed): the payload as compact JSON."""
        return json.dumps(self.payload(), separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


class EventStore(Protocol):
    def append(self, event: Event) -> None:
        """Add the event to the log, numbering it after every event already committed or
        committing (its transaction must commit for the event to exist)."""
        ...
    def list_after(self, after: int | None, *, types: Sequence[str], limit: int) -> list[Event]:
        """Up to ``limit`` events with a sequence above ``after``, in order; ``types`` (exact
        types or ``prefix.*``) narrows when not empty."""
        ...


class EventingUnitOfWork(Protocol):
    @property
    def events(self) -> EventStore: ...
    @property
    def webhooks(self) -> WebhookStore: ...


def is_event_type(value: str) -> bool:
    return value in EVENT_TYPES or value.startswith(OPEN_PREFIXES)


def emit(uow: EventingUnitOfWork, event_type: str, *, organization_id: str | None, data: Mapping[str, Any],
         now: datetime) -> Event:
    """Record ``event_type`` about ``data`` in ``uow``'s transaction and queue its webhook
    deliveries; the caller commits. Call it after the change's other writes (on PostgreSQL the
    event log is appended to one transaction at a time, until commit)."""
    if not is_event_type(event_type):
        raise ValueError(f"unknown event type {event_type!r}")
    event = Event(id=str(uuid.uuid4()), type=event_type, organization_id=organization_id,
                  data=mask_secrets(dict(data)), created_at=now)
    uow.events.append(event)
    for subscription in uow.webhooks.subscriptions():
        if subscription.accepts(event_type):
            uow.webhooks.add_delivery(new_delivery(subscription.endpoint_id, event.id, event_type, now))
    return event


def list_events(events: EventStore, principal: Principal, *, after: str | None, types: Sequence[str],
                limit: int) -> list[Event]:
    """The log after ``after`` (a sequence number from a previous answer), for instance admins."""
    require_instance_admin(principal)
    position: int | None = None
    if after:
        if not after.isdigit() or len(after) > 18:
            raise InvalidInput("after: must be the sequence number of an event (a non-negative integer)",
                               field="after")
        position = int(after)
    for value in types:
        if not (is_event_type(value) or (value.endswith(".*") and len(value) > 2)):
            raise InvalidInput(f"types: {value!r} is not an event type Keyhall emits", field="types")
    return events.list_after(position, types=list(types), limit=max(1, min(limit, MAX_LIMIT)))


# --- what events say about resources -----------------------------------------------------------------


def connection_data(conn: Connection, *, changed: Sequence[str] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": conn.id, "organization_id": conn.organization_id, "protocol": str(conn.protocol),
        "provider": str(conn.provider), "name": conn.name, "status": str(conn.status),
        "is_verified": conn.is_verified, "domains": list(conn.domains), "version": conn.version,
    }
    if changed:
        data["changed"] = sorted({name.split(".", 1)[0] for name in changed})
    return data


def domain_data(domain: Domain) -> dict[str, Any]:
    return {"id": domain.id, "organization_id": domain.organization_id, "domain": domain.name,
            "status": str(domain.status), "verified_at": _iso(domain.verified_at)}


def user_data(user: User, *, changed: Sequence[str] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": user.id, "organization_id": user.organization_id, "connection_id": user.connection_id,
        "email": user.email, "name": user.name, "disabled": user.disabled,
    }
    if changed:
        data["changed"] = sorted(changed)
    return data


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
