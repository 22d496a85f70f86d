"""Webhook rules without a database or network: Standard Webhooks signing (checked with the
reference library), the retry schedule, event-type filters and secret rotation."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from keyhall.core import events
from keyhall.core.webhooks import (
    AttemptResult,
    Delivery,
    DeliveryStatus,
    Subscription,
    after_attempt,
    check_event_types,
    new_delivery,
    new_endpoint,
    next_attempt_delay,
    rotate_secret,
    type_matches,
)
from keyhall.errors import InvalidInput
from keyhall.protocols import standard_webhooks
from keyhall.settings import Settings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
BODY = b'{"data":{"id":"c1"},"id":"e1","type":"connection.created"}'


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = standard_webhooks.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != standard_webhooks.new_secret()


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_not base64!", "sk_" + "A" * 44,
                                 "whsec_" + base64.b64encode(b"short").decode()])
def test_a_malformed_secret_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        standard_webhooks.secret_key(bad)


def test_the_reference_library_verifies_what_is_signed() -> None:
    secret = standard_webhooks.new_secret()
    headers = standard_webhooks.sign_headers([secret], "msg_1", NOW, BODY)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["webhook-signature"] == Webhook(secret).sign("msg_1", NOW, BODY)
    receiver = Webhook(secret)
    fresh = standard_webhooks.sign_headers([secret], "msg_1", datetime.now(UTC), BODY)
    assert receiver.verify(BODY, fresh)["id"] == "e1"


def test_a_changed_body_id_or_time_fails_verification() -> None:
    secret = standard_webhooks.new_secret()
    headers = standard_webhooks.sign_headers([secret], "msg_1", datetime.now(UTC), BODY)
    receiver = Webhook(secret)
    with pytest.raises(WebhookVerificationError):
        receiver.verify(BODY.replace(b"c1", b"c2"), headers)
    with pytest.raises(WebhookVerificationError):
        receiver.verify(BODY, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        receiver.verify(BODY, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)})
    with pytest.raises(WebhookVerificationError):
        Webhook(standard_webhooks.new_secret()).verify(BODY, headers)


def test_during_a_rotation_both_secrets_sign() -> None:
    endpoint = new_endpoint("https://hooks.example.com/in", description=None, event_types=[], enabled=True, now=NOW)
    old = endpoint.secret
    new = rotate_secret(endpoint, NOW, timedelta(hours=24))
    assert new != old
    assert endpoint.secret == new
    now = datetime.now(UTC)
    in_overlap = endpoint.signing_secrets(NOW + timedelta(hours=23))
    assert in_overlap == [new, old]
    headers = standard_webhooks.sign_headers(in_overlap, "msg_1", now, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    assert endpoint.signing_secrets(NOW + timedelta(hours=24)) == [new]
    rotate_secret(endpoint, NOW, timedelta(0))
    assert endpoint.previous_secret is None
    assert endpoint.signing_secrets(NOW) == [endpoint.secret]


def test_a_message_id_with_the_separator_is_refused() -> None:
    with pytest.raises(ValueError, match="no dots"):
        standard_webhooks.sign_headers([standard_webhooks.new_secret()], "a.b", NOW, BODY)
    with pytest.raises(ValueError, match="at least one secret"):
        standard_webhooks.sign_headers([], "a", NOW, BODY)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    base = timedelta(seconds=5)
    for attempt in range(1, 12):
        full = min(base * 2 ** (attempt - 1), timedelta(hours=2))
        assert next_attempt_delay(attempt, base, rng=random.Random(0)) >= full / 2
        for seed in range(20):
            delay = next_attempt_delay(attempt, base, rng=random.Random(seed))
            assert full / 2 <= delay <= full
    assert next_attempt_delay(60, base) <= timedelta(hours=2)
    spread = {next_attempt_delay(3, base, rng=random.Random(seed)) for seed in range(10)}
    assert len(spread) > 1  # jitter: failures together do not retry together


def _failing_until_given_up(period: timedelta, base: timedelta, rng: random.Random) -> tuple[int, timedelta]:
    delivery = new_delivery("endpoint-1", "e1", "user.created", NOW)
    now = NOW
    while True:
        delivery.attempts += 1
        after_attempt(delivery, AttemptResult(status_code=500, excerpt="no"), now, base=base, retry_period=period,
                      rng=rng)
        if delivery.status is DeliveryStatus.FAILED:
            return delivery.attempts, now - NOW
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.next_attempt_at > now
        now = delivery.next_attempt_at


def test_retries_go_on_for_at_least_the_period_then_fail() -> None:
    for seed in range(5):
        attempts, span = _failing_until_given_up(timedelta(hours=24), timedelta(seconds=5), random.Random(seed))
        assert span >= timedelta(hours=24)
        assert span <= timedelta(hours=26)  # the last wait is at most the cap
        assert 15 <= attempts <= 40


def test_a_success_ends_the_delivery_and_keeps_a_short_excerpt() -> None:
    delivery = new_delivery("endpoint-1", "e1", "user.created", NOW)
    delivery.attempts = 1
    after_attempt(delivery, AttemptResult(status_code=204, excerpt="x" * 5000), NOW, base=timedelta(seconds=1),
                  retry_period=timedelta(hours=1))
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert delivery.delivered_at == NOW
    assert delivery.response_excerpt is not None
    assert len(delivery.response_excerpt) <= 512
    failed = AttemptResult(status_code=None, error="timed out")
    assert not failed.ok
    assert not AttemptResult(status_code=302).ok
    assert AttemptResult(status_code=299).ok


def test_event_type_filters() -> None:
    assert type_matches([], "user.created")
    assert type_matches(["*"], "user.created")
    assert type_matches(["user.*"], "user.created")
    assert not type_matches(["user.*"], "users.created")
    assert type_matches(["connection.*"], "connection.certificate.expiring")
    assert not type_matches(["connection.created"], "connection.updated")
    assert type_matches(["directory.*"], "directory.user.created")


def test_event_types_are_checked() -> None:
    known, open_prefixes = events.EVENT_TYPES, events.OPEN_PREFIXES
    assert check_event_types(["user.created", "user.created", "domain.*", "directory.group.updated"], known,
                             open_prefixes) == ["user.created", "domain.*", "directory.group.updated"]
    for bad in ["user.exploded", "USER.created", "user.", "user created", "*.created", ""]:
        with pytest.raises(InvalidInput) as caught:
            check_event_types([bad], known, open_prefixes)
        assert caught.value.field == "event_types"


def test_the_types_other_parts_emit_later_are_valid() -> None:
    for name in ["connection.certificate.expiring", "session.ended", "directory.user.deleted"]:
        assert events.is_event_type(name)
    assert not events.is_event_type("connection.exploded")


def test_an_event_payload_masks_secrets() -> None:
    event = events.Event(id="e1", type="user.created", organization_id="o1", created_at=NOW,
                         data={"id": "u1", "client_secret": "hush", "nested": {"password": "pw"}})
    captured: list[events.Event] = []

    class Store:
        def append(self, e: events.Event) -> None:
            captured.append(e)

    class Hooks:
        def subscriptions(self) -> list[object]:
            return []

    class Uow:
        events = Store()
        webhooks = Hooks()

    emitted = events.emit(Uow(), "user.created", organization_id="o1", data=event.data, now=NOW)  # type: ignore[arg-type]
    assert captured == [emitted]
    assert b"hush" not in emitted.body()
    assert b"pw" not in emitted.body()
    with pytest.raises(ValueError, match="unknown event type"):
        events.emit(Uow(), "user.exploded", organization_id=None, data={}, now=NOW)  # type: ignore[arg-type]


def test_an_event_is_queued_for_the_endpoints_that_subscribed_to_it() -> None:
    queued: list[tuple[str, str]] = []

    class Store:
        def append(self, e: events.Event) -> None:
            e.sequence = 1

    class Hooks:
        def subscriptions(self) -> list[Subscription]:
            return [Subscription("all", ()), Subscription("users", ("user.*",)), Subscription("domains", ("domain.*",)),
                    Subscription("exact", ("user.deleted",))]

        def add_delivery(self, delivery: Delivery) -> None:
            queued.append((delivery.endpoint_id, delivery.event_id))

    class Uow:
        events = Store()
        webhooks = Hooks()

    emitted = events.emit(Uow(), "user.created", organization_id="o1", data={}, now=NOW)  # type: ignore[arg-type]
    assert queued == [("all", emitted.id), ("users", emitted.id)]


def test_event_retention_is_at_least_30_days_or_forever() -> None:
    assert Settings(_env_file=None, event_retention_days=0).event_retention_days == 0  # type: ignore[call-arg]
    assert Settings(_env_file=None).event_retention_days == 30  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="at least 30 days"):
        Settings(_env_file=None, event_retention_days=7)  # type: ignore[call-arg]
