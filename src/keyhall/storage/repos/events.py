"""SQLAlchemy storage of the event log and of webhook endpoints and deliveries.

Ordering: an event's ``sequence`` is the ``after`` cursor of ``GET /v1/events``, so a reader must
never see sequence N+1 committed while N may still commit. On SQLite every transaction holds the
write lock from its first statement (``BEGIN IMMEDIATE``), so numbers are handed out in commit order.
On PostgreSQL concurrent transactions draw numbers independently; ``append`` first takes a
transaction-scoped advisory lock, held until commit or rollback, so transactions that write events
commit one after another in the order of their numbers. Events are emitted as the last writes of
their transaction, which keeps the lock short.

Claims: a delivery is leased by a conditional ``UPDATE`` (still pending, lease free or run out),
after a ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL so instances do not queue on each
other's candidates; whoever's update matched holds it, with a random ``lease_token`` that its
outcome must present.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select, text, update
from sqlalchemy.orm import Session

from keyhall.core.events import Event
from keyhall.core.webhooks import Claimed, Delivery, DeliveryStatus, Subscription, WebhookEndpoint
from keyhall.security.secrets import SecretBox
from keyhall.storage import hot_queries
from keyhall.storage.models import EventRow, WebhookDeliveryRow, WebhookEndpointRow
from keyhall.storage.pagination import paginate
from keyhall.storage.repos._query import dialect_name

#: The PostgreSQL advisory lock that orders appends to the event log ("keyhall" "evts" in ASCII).
EVENT_LOG_LOCK = 0x6B657968_65767473
#: Taking it: a prebuilt statement, run on the unit's connection (``hot_queries.run``).
LOCK_EVENT_LOG = text("SELECT pg_advisory_xact_lock(:key)")

#: The table itself, for plain INSERTs that skip the ORM's flush.


def _type_filter(column: Any, types: Sequence[str]) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    for pattern in types:
        if pattern == "*":
            return or_(column.is_not(None))
        if pattern.endswith(".*"):
            conditions.append(column.startswith(pattern[:-1], autoescape=True))
        else:
            conditions.append(column == pattern)
    return or_(*conditions) if conditions else false()


class SqlEvents:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: EventRow) -> Event:
        return Event(id=row.id, type=row.type, organization_id=row.organization_id, data=dict(row.data),
                     created_at=row.created_at, sequence=row.sequence)

    def append(self, event: Event) -> None:
        if dialect_name(self.session) == "postgresql":
            hot_queries.run(self.session, LOCK_EVENT_LOG, key=EVENT_LOG_LOCK)
        event.sequence = int(hot_queries.run(
            self.session, hot_queries.INSERT_EVENT, id=event.id, type=event.type,
            organization_id=event.organization_id, data=event.data, created_at=event.created_at).scalar_one())

    def list_after(self, after: int | None, *, types: Sequence[str], limit: int) -> list[Event]:
        query = select(EventRow)
        if after is not None:
            query = query.where(EventRow.sequence > after)
        if types:
            query = query.where(_type_filter(EventRow.type, types))
        return [self._entity(r) for r in self.session.scalars(query.order_by(EventRow.sequence).limit(limit))]

    def get(self, event_id: str) -> Event | None:
        row = self.session.scalar(select(EventRow).where(EventRow.id == event_id))
        return self._entity(row) if row else None


class SqlWebhooks:
    def __init__(self, session: Session, box: SecretBox):
        self.session = session
        self.box = box

    # --- endpoints -----------------------------------------------------------------------------

    def _endpoint(self, row: WebhookEndpointRow) -> WebhookEndpoint:
        sealed = self.box.open(row.sealed_secrets)
        return WebhookEndpoint(id=row.id, url=row.url, description=row.description,
                               event_types=list(row.event_types), enabled=row.enabled, secret=sealed["secret"],
                               previous_secret=sealed.get("previous_secret"),
                               previous_secret_expires_at=row.previous_secret_expires_at,
                               created_at=row.created_at, updated_at=row.updated_at)

    def _endpoint_values(self, endpoint: WebhookEndpoint) -> dict[str, Any]:
        sealed = {"secret": endpoint.secret}
        if endpoint.previous_secret:
            sealed["previous_secret"] = endpoint.previous_secret
        return dict(url=endpoint.url, description=endpoint.description, event_types=list(endpoint.event_types),
                    enabled=endpoint.enabled, sealed_secrets=self.box.seal(sealed),
                    previous_secret_expires_at=endpoint.previous_secret_expires_at,
                    created_at=endpoint.created_at, updated_at=endpoint.updated_at)

    def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.session.add(WebhookEndpointRow(id=endpoint.id, **self._endpoint_values(endpoint)))

    def save_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.session.execute(update(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint.id)
                             .values(**self._endpoint_values(endpoint)))

    def delete_endpoint(self, endpoint_id: str) -> None:
        row = self.session.get(WebhookEndpointRow, endpoint_id)
        if row is not None:
            self.session.delete(row)
            self.session.flush()

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        row = self.session.get(WebhookEndpointRow, endpoint_id)
        return self._endpoint(row) if row else None

    def list_endpoints(self, *, limit: int, cursor: str | None) -> tuple[list[WebhookEndpoint], str | None]:
        page = paginate(self.session, select(WebhookEndpointRow), WebhookEndpointRow.created_at,
                        WebhookEndpointRow.id, limit=limit, cursor=cursor, convert=self._endpoint)
        return page.items, page.next_cursor

    def subscriptions(self) -> list[Subscription]:
        rows = hot_queries.run(self.session, hot_queries.ENABLED_WEBHOOK_SUBSCRIPTIONS)
        return [Subscription(endpoint_id=row.id, event_types=tuple(row.event_types)) for row in rows]

    def all_sealed_secrets(self) -> list[tuple[str, str]]:
        rows = self.session.execute(select(WebhookEndpointRow.id, WebhookEndpointRow.sealed_secrets))
        return [(row[0], row[1]) for row in rows]

    def replace_sealed_secret(self, endpoint_id: str, blob: str) -> None:
        self.session.execute(update(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id)
                             .values(sealed_secrets=blob))

    # --- deliveries ----------------------------------------------------------------------------

    @staticmethod
    def _delivery(row: WebhookDeliveryRow) -> Delivery:
        return Delivery(id=row.id, endpoint_id=row.endpoint_id, event_id=row.event_id, event_type=row.event_type,
                        status=DeliveryStatus(row.status), created_at=row.created_at,
                        next_attempt_at=row.next_attempt_at, attempts=row.attempts,
                        last_attempt_at=row.last_attempt_at, last_status_code=row.last_status_code,
                        last_error=row.last_error, response_excerpt=row.response_excerpt,
                        delivered_at=row.delivered_at, lease_until=row.lease_until, lease_token=row.lease_token,
                        retry_from=row.retry_from)

    @staticmethod
    def _outcome_values(delivery: Delivery) -> dict[str, Any]:
        return dict(status=str(delivery.status), next_attempt_at=delivery.next_attempt_at,
                    last_attempt_at=delivery.last_attempt_at, last_status_code=delivery.last_status_code,
                    last_error=delivery.last_error, response_excerpt=delivery.response_excerpt,
                    delivered_at=delivery.delivered_at, lease_until=None, lease_token=None)

    def add_delivery(self, delivery: Delivery) -> None:
        self.session.add(WebhookDeliveryRow(
            id=delivery.id, endpoint_id=delivery.endpoint_id, event_id=delivery.event_id,
            event_type=delivery.event_type, attempts=delivery.attempts, created_at=delivery.created_at,
            retry_from=delivery.retry_from or delivery.created_at, **self._outcome_values(delivery)))

    def get_delivery(self, endpoint_id: str, delivery_id: str) -> Delivery | None:
        row = self.session.scalar(select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id,
                                                                   WebhookDeliveryRow.endpoint_id == endpoint_id))
        return self._delivery(row) if row else None

    def list_deliveries(self, endpoint_id: str, *, limit: int, cursor: str | None,
                        status: str | None = None) -> tuple[list[Delivery], str | None]:
        query = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint_id)
        if status:
            query = query.where(WebhookDeliveryRow.status == status)
        page = paginate(self.session, query, WebhookDeliveryRow.created_at, WebhookDeliveryRow.id, limit=limit,
                        cursor=cursor, convert=self._delivery)
        return page.items, page.next_cursor

    @staticmethod
    def _lease_free(now: datetime) -> ColumnElement[bool]:
        return or_(WebhookDeliveryRow.lease_until.is_(None), WebhookDeliveryRow.lease_until <= now)

    def reschedule(self, delivery_id: str, now: datetime) -> bool:
        done = self.session.execute(
            update(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id, self._lease_free(now))
            .values(status=str(DeliveryStatus.PENDING), next_attempt_at=now, retry_from=now, attempts=0,
                    lease_until=None, lease_token=None))
        return int(getattr(done, "rowcount", 0) or 0) == 1

    def claim_due(self, now: datetime, lease: timedelta, *, limit: int) -> list[Claimed]:
        candidates = (
            select(WebhookDeliveryRow.id)
            .join(WebhookEndpointRow, WebhookEndpointRow.id == WebhookDeliveryRow.endpoint_id)
            .where(WebhookDeliveryRow.status == str(DeliveryStatus.PENDING),
                   WebhookDeliveryRow.next_attempt_at <= now, WebhookEndpointRow.enabled.is_(True),
                   self._lease_free(now))
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .limit(limit)
        )
        if dialect_name(self.session) == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True, of=WebhookDeliveryRow)
        claimed: list[Claimed] = []
        for delivery_id in list(self.session.scalars(candidates)):
            token = secrets.token_hex(16)
            won = self.session.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery_id,
                       WebhookDeliveryRow.status == str(DeliveryStatus.PENDING), self._lease_free(now))
                .values(lease_until=now + lease, lease_token=token, attempts=WebhookDeliveryRow.attempts + 1))
            if int(getattr(won, "rowcount", 0) or 0) != 1:
                continue
            found = self._claimed(delivery_id, token, now)
            if found is not None:
                claimed.append(found)
        return claimed

    def _claimed(self, delivery_id: str, token: str, now: datetime) -> Claimed | None:
        row = self.session.get(WebhookDeliveryRow, delivery_id, populate_existing=True)
        endpoint_row = self.session.get(WebhookEndpointRow, row.endpoint_id) if row else None
        event = SqlEvents(self.session).get(row.event_id) if row else None
        if row is None or endpoint_row is None or event is None:
            return None
        endpoint = self._endpoint(endpoint_row)
        return Claimed(delivery=self._delivery(row), url=endpoint.url, secrets=endpoint.signing_secrets(now),
                       body=event.body(), lease_token=token)

    def finish_attempt(self, claimed: Claimed, delivery: Delivery) -> bool:
        done = self.session.execute(
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery.id, WebhookDeliveryRow.lease_token == claimed.lease_token)
            .values(**self._outcome_values(delivery)))
        return int(getattr(done, "rowcount", 0) or 0) == 1
