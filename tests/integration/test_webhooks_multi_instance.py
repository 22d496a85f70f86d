"""Two Keyhall instances on one PostgreSQL database, each with its own webhook deliverer: every
event reaches every subscribed endpoint exactly once, the event log stays ordered while both write
to it at once, and a delivery whose instance died (its lease ran out) is taken over by the other.

The instances are two runtimes (engines, pools, deliverer threads) in this process: what they
share is only the database, as two ``keyhall serve`` processes would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.jobs import WebhookDeliverer
from keyhall.runtime import Runtime, utcnow
from keyhall.security.secrets import new_key
from tests.support.api import Keyhall, auth
from tests.support.servers import database_url, postgres_database
from tests.support.settings import make_settings
from tests.support.webhook_receiver import WebhookReceiver, wait_until, webhook_receiver

pytestmark = pytest.mark.own_database

USERS_PER_INSTANCE = 15
PASSWORD = "correct horse battery staple"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "saml"


@dataclass
class Pair:
    first: Keyhall
    second: Keyhall


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    key = new_key()
    with postgres_database("keyhall_wh") as name:
        halls: list[Keyhall] = []
        clients: list[TestClient] = []
        try:
            for index in range(2):
                settings = make_settings(Path(tmp_path_factory.mktemp(f"instance-{index}")), database_url(name),
                                         secret_keys=key, webhook_retry_base_seconds=0.05,
                                         api_rate_limit_per_minute=0)
                runtime = Runtime.build(settings)
                runtime.database.migrate()
                client = TestClient(create_app(settings, runtime), raise_server_exceptions=False).__enter__()
                clients.append(client)
                halls.append(Keyhall(client, runtime))
            yield Pair(*halls)
        finally:
            for client in clients:
                client.__exit__(None, None, None)
            for hall in halls:
                hall.runtime.database.dispose()


def last_sequence(hall: Keyhall) -> int:
    page = hall.client.get("/v1/events", params={"limit": 200}, headers=auth(hall.instance_token)).json()
    while page["has_more"]:
        page = hall.client.get("/v1/events", params={"limit": 200, "after": page["next_cursor"]},
                               headers=auth(hall.instance_token)).json()
    return int(page["next_cursor"] or 0)


def subscribe(hall: Keyhall, receiver: WebhookReceiver, path: str) -> dict[str, Any]:
    response = hall.client.post("/v1/webhook-endpoints", json={"url": receiver.url(path),
                                                               "event_types": ["user.created"]},
                                headers=auth(hall.instance_token))
    assert response.status_code == 201, response.text
    receiver.secrets[path] = [response.json()["secret"]]
    endpoint: dict[str, Any] = response.json()
    return endpoint


def test_a_dead_instances_delivery_is_taken_over_when_its_lease_runs_out(pair: Pair,
                                                                          receiver: WebhookReceiver) -> None:
    endpoint = subscribe(pair.first, receiver, "/lease")
    tenant = pair.first.tenant("Lease")
    made = pair.first.client.post(f"/v1/organizations/{tenant.id}/users",
                                  json={"email": "lee@lease.example", "password": PASSWORD}, headers=auth(tenant.owner))
    assert made.status_code == 201, made.text
    now, lease = utcnow(), timedelta(seconds=60)
    with pair.first.runtime.database.unit_of_work() as uow:
        [held] = uow.webhooks.claim_due(now, lease, limit=10)
        uow.commit()
    with pair.second.runtime.database.unit_of_work() as uow:
        assert uow.webhooks.claim_due(now + timedelta(seconds=59), lease, limit=10) == []
        uow.commit()
        [taken] = uow.webhooks.claim_due(now + timedelta(seconds=61), lease, limit=10)
        uow.commit()
    assert taken.delivery.id == held.delivery.id
    assert taken.delivery.attempts == 2
    assert taken.lease_token != held.lease_token
    with pair.first.runtime.database.unit_of_work() as uow:  # the first instance comes back too late
        assert not uow.webhooks.finish_attempt(held, held.delivery)
        uow.commit()
    deleted = pair.first.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}",
                                       headers=auth(pair.first.instance_token))
    assert deleted.status_code == 204


def test_each_event_reaches_each_endpoint_once_with_two_deliverers(pair: Pair, receiver: WebhookReceiver) -> None:
    for path in ("/one", "/two"):
        subscribe(pair.first, receiver, path)
    tenant = pair.second.tenant("Twice")
    # Users pre-created for an SSO connection: no password to hash, so the writers are quick.
    saml = {"protocol": "saml", "name": "corp-saml",
            "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()}}
    made = pair.second.client.post(f"/v1/organizations/{tenant.id}/connections", json=saml,
                                   headers=auth(tenant.owner))
    assert made.status_code == 201, made.text
    connection_id = made.json()["id"]
    deliverers = [WebhookDeliverer(hall.runtime, interval=0.02) for hall in (pair.first, pair.second)]
    for deliverer in deliverers:
        deliverer.start()
    try:
        def make_users(hall: Keyhall, prefix: str) -> None:
            for n in range(USERS_PER_INSTANCE):
                response = hall.client.post(f"/v1/organizations/{tenant.id}/users",
                                            json={"email": f"{prefix}{n}@twice.example",
                                                  "connection_id": connection_id},
                                            headers=auth(tenant.owner))
                assert response.status_code == 201, response.text

        # A reader follows the log with `after` while both instances write: it must see every
        # event once, none skipped because a lower sequence committed after a higher one.
        followed: list[dict[str, Any]] = []
        cursor = str(last_sequence(pair.first))
        writing = threading.Event()
        writing.set()

        def follow() -> None:
            nonlocal cursor
            while True:
                still_writing = writing.is_set()
                page = pair.first.client.get("/v1/events", params={"after": cursor, "types": "user.created"},
                                             headers=auth(pair.first.instance_token)).json()
                followed.extend(page["data"])
                cursor = page["next_cursor"] or cursor
                if not still_writing and not page["has_more"]:
                    return

        writers = [threading.Thread(target=make_users, args=(hall, prefix))
                   for hall, prefix in ((pair.first, "a"), (pair.second, "b"))]
        reader = threading.Thread(target=follow)
        reader.start()
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=60)
        writing.clear()
        reader.join(timeout=30)
        assert sorted(e["data"]["email"] for e in followed) == sorted(
            f"{p}{n}@twice.example" for p in "ab" for n in range(USERS_PER_INSTANCE))
        total = 2 * USERS_PER_INSTANCE
        wait_until(lambda: all(len(receiver.delivered(p)) >= total for p in ("/one", "/two")), timeout=30,
                   what="every delivery")
        time.sleep(0.5)  # a duplicate, if any instance sent one, would arrive by now
    finally:
        for deliverer in deliverers:
            deliverer.stop()
    for path in ("/one", "/two"):
        got = receiver.for_path(path)
        ids = Counter(r.headers["webhook-id"] for r in got)
        assert len(got) == total, Counter(r.answered for r in got)
        assert set(ids.values()) == {1}
        assert all(r.verified_by for r in got)
        assert len({r.payload["id"] for r in got}) == total

    # The log holds them all in one order, whichever instance wrote them.
    listed = pair.second.client.get("/v1/events", params={"types": "user.created", "limit": 200},
                                    headers=auth(pair.second.instance_token))
    assert listed.status_code == 200, listed.text
    emails = [e["data"]["email"] for e in listed.json()["data"] if e["organization_id"] == tenant.id]
    assert sorted(emails) == sorted([f"{p}{n}@twice.example" for p in "ab" for n in range(USERS_PER_INSTANCE)])
    sequences = [e["sequence"] for e in listed.json()["data"]]
    assert sequences == sorted(sequences)
