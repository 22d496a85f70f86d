"""Events and webhooks end to end on a real database: the event log (``GET /v1/events``) and
deliveries to a real HTTP receiver on 127.0.0.1 that checks every message with the Standard
Webhooks reference library, fails some on purpose (500, a stall past the timeout) and sees them
retried; secret rotation, the delivery log, redelivery, the SSRF guard and instance-admin only.

One Keyhall app and one background deliverer serve the module; the backoff base and retry period
are set small so retries happen within the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from keyhall.app import create_app
from keyhall.core.webhooks import new_endpoint
from keyhall.jobs import WebhookDeliverer, deliver_webhooks
from keyhall.runtime import Runtime, utcnow
from tests.support.api import Keyhall, Tenant, auth
from tests.support.database import fresh_database
from tests.support.dns_server import DnsServer
from tests.support.settings import make_settings
from tests.support.webhook_receiver import WebhookReceiver, wait_until, webhook_receiver

FIXTURES = Path(__file__).parent.parent / "fixtures" / "saml"
PASSWORD = "correct horse battery staple"
RETRY_PERIOD = 3.0  # seconds: an endpoint failing this long after the first attempt is given up


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        running.stall_seconds = 1.5
        yield running


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory, dns: DnsServer) -> Iterator[Keyhall]:
    with fresh_database(tmp_path_factory.mktemp("webhooks-db")) as url:
        settings = make_settings(tmp_path_factory.mktemp("webhooks-data"), url, webhook_retry_base_seconds=0.05,
                                 dns_resolver=dns.address,
                                 webhook_retry_period_seconds=RETRY_PERIOD, webhook_timeout_seconds=0.75,
                                 webhook_secret_overlap_seconds=3600)
        runtime = Runtime.build(settings)
        runtime.database.migrate()
        deliverer = WebhookDeliverer(runtime, interval=0.05)
        deliverer.start()
        try:
            with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
                yield Keyhall(client, runtime)
        finally:
            deliverer.stop()
            runtime.database.dispose()


def admin(hall: Keyhall) -> dict[str, str]:
    return auth(hall.instance_token)


def subscribe(hall: Keyhall, receiver: WebhookReceiver, path: str, types: list[str] | None = None,
              **extra: Any) -> dict[str, Any]:
    response = hall.client.post("/v1/webhook-endpoints", json={"url": receiver.url(path), "event_types": types or [],
                                                               **extra}, headers=admin(hall))
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    assert endpoint["secret"].startswith("whsec_")
    receiver.secrets[path] = [endpoint["secret"]]
    return endpoint


def make_user(hall: Keyhall, tenant: Tenant, email: str) -> dict[str, Any]:
    response = hall.client.post(f"/v1/organizations/{tenant.id}/users", json={"email": email, "password": PASSWORD},
                                headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def events(hall: Keyhall, **params: Any) -> dict[str, Any]:
    response = hall.client.get("/v1/events", params=params, headers=admin(hall))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def last_sequence(hall: Keyhall) -> int:
    seen, after = None, None
    while True:
        page = events(hall, limit=200, **({"after": after} if after else {}))
        if page["data"]:
            seen = page["data"][-1]["sequence"]
        if not page["has_more"]:
            return int(seen or 0)
        after = page["next_cursor"]


def deliveries(hall: Keyhall, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    response = hall.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 200, **params},
                               headers=admin(hall))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def test_changes_are_logged_in_order_and_paged_by_after_and_types(hall: Keyhall) -> None:
    start = last_sequence(hall)
    tenant = hall.tenant("Event Log")
    user = make_user(hall, tenant, "ada@events.example")
    url = f"/v1/organizations/{tenant.id}/users/{user['id']}"
    assert hall.client.patch(url, json={"name": "Ada"}, headers=auth(tenant.owner)).status_code == 200
    assert hall.client.patch(url, json={"disabled": True}, headers=auth(tenant.owner)).status_code == 200
    assert hall.client.delete(url, headers=auth(tenant.owner)).status_code == 204
    saml = {"protocol": "saml", "name": "corp-saml", "domains": [f"{uuid.uuid4().hex[:8]}.events.example"],
            "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()}}
    made = hall.client.post(f"/v1/organizations/{tenant.id}/connections", json=saml, headers=auth(tenant.owner))
    assert made.status_code == 201, made.text
    conn_url = f"/v1/organizations/{tenant.id}/connections/{made.json()['id']}"
    assert hall.client.patch(conn_url, json={"status": "inactive"}, headers=auth(tenant.owner)).status_code == 200
    assert hall.client.delete(conn_url, headers=auth(tenant.owner)).status_code == 204

    everything = events(hall, after=str(start), limit=200)["data"]
    assert [e["type"] for e in everything] == [
        "user.created", "user.updated", "user.updated", "user.disabled", "user.deleted",
        "connection.created", "connection.updated", "connection.deactivated", "connection.deleted"]
    sequences = [e["sequence"] for e in everything]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)
    first = everything[0]
    assert set(first) == {"id", "sequence", "type", "created_at", "organization_id", "data"}
    assert first["organization_id"] == tenant.id
    assert first["data"]["email"] == "ada@events.example"
    assert "password" not in str(everything)
    assert "hash" not in str(everything)
    assert everything[1]["data"]["changed"] == ["name"]
    assert everything[6]["data"]["status"] == "inactive"

    # Paging: two at a time, only user events, by `after` (and `cursor`, its synonym).
    seen, after = [], str(start)
    while True:
        page = events(hall, after=after, limit=2, types="user.*")
        seen += page["data"]
        if not page["has_more"]:
            break
        after = page["next_cursor"]
        assert after == str(page["data"][-1]["sequence"])
    assert [e["id"] for e in seen] == [e["id"] for e in everything[:5]]
    exact = events(hall, cursor=str(start), types=["connection.created", "connection.deleted"])["data"]
    assert [e["type"] for e in exact] == ["connection.created", "connection.deleted"]
    # Polling past the end answers nothing new and the same cursor to poll with.
    tail = events(hall, after=str(sequences[-1]))
    assert tail["data"] == []
    assert tail["next_cursor"] == str(sequences[-1])
    assert tail["has_more"] is False


def test_domain_proof_and_its_loss_are_announced(hall: Keyhall, dns: DnsServer) -> None:
    tenant = hall.tenant("Domains")
    start = last_sequence(hall)
    name = f"{uuid.uuid4().hex[:8]}.proof.example"
    claimed = hall.client.post(f"/v1/organizations/{tenant.id}/domains", json={"domain": name},
                               headers=auth(tenant.owner))
    assert claimed.status_code == 201, claimed.text
    domain = claimed.json()
    url = f"/v1/organizations/{tenant.id}/domains/{domain['id']}"
    failed = hall.client.post(f"{url}/verify", headers=auth(tenant.owner))  # no record yet: nothing to announce
    assert failed.json()["status"] == "failed"
    dns.publish_txt(domain["verification"]["name"], domain["verification"]["value"])
    verified = hall.client.post(f"{url}/verify", headers=auth(tenant.owner))
    assert verified.json()["status"] == "verified", verified.text
    assert hall.client.post(f"{url}/verify", headers=auth(tenant.owner)).status_code == 200  # still verified
    assert hall.client.delete(url, headers=auth(tenant.owner)).status_code == 204
    found = events(hall, after=str(start), types="domain.*")["data"]
    assert [(e["type"], e["data"]["domain"], e["data"]["status"]) for e in found] == [
        ("domain.verified", name, "verified"), ("domain.unverified", name, "deleted")]
    assert found[0]["organization_id"] == tenant.id


def test_a_change_that_fails_announces_nothing(hall: Keyhall) -> None:
    tenant = hall.tenant("No Ghosts")
    make_user(hall, tenant, "bo@events.example")
    start = last_sequence(hall)
    again = hall.client.post(f"/v1/organizations/{tenant.id}/users",
                             json={"email": "bo@events.example", "password": PASSWORD}, headers=auth(tenant.owner))
    assert again.status_code == 409, again.text
    assert events(hall, after=str(start))["data"] == []


def test_bad_event_queries_are_400_naming_the_field(hall: Keyhall) -> None:
    cases = [({"after": "-1"}, "after"), ({"after": "abc"}, "after"), ({"types": "user.exploded"}, "types")]
    for params, name in cases:
        response = hall.client.get("/v1/events", params=params, headers=admin(hall))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"]["field"] == name


def test_only_instance_admins_see_events_and_endpoints(hall: Keyhall, receiver: WebhookReceiver) -> None:
    tenant = hall.tenant("Not Admin")
    for token in (tenant.owner, tenant.viewer):
        for method, path in [("GET", "/v1/events"), ("GET", "/v1/webhook-endpoints"),
                             ("POST", "/v1/webhook-endpoints")]:
            response = hall.client.request(method, path, headers=auth(token),
                                           json={"url": receiver.url("/nope")} if method == "POST" else None)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
    assert hall.client.get("/v1/events").status_code == 401
    assert receiver.for_path("/nope") == []


def test_deliveries_are_signed_retried_logged_and_redelivered(hall: Keyhall, receiver: WebhookReceiver) -> None:
    steady = subscribe(hall, receiver, "/steady", ["user.created"], description="all good")
    flaky = subscribe(hall, receiver, "/flaky", ["user.*"])
    slow = subscribe(hall, receiver, "/slow", ["user.created"])
    dead = subscribe(hall, receiver, "/dead", ["user.created"])
    receiver.plans["/flaky"] = [500, 500]  # the first two attempts (of the first event) fail
    receiver.plans["/slow"] = ["stall"]  # the first attempt gets no answer within the timeout
    receiver.plans["/dead"] = [500] * 1000
    assert "secret" not in hall.client.get(f"/v1/webhook-endpoints/{steady['id']}", headers=admin(hall)).json()

    tenant = hall.tenant("Hooks")
    user = make_user(hall, tenant, "cy@events.example")
    wait_until(lambda: len(receiver.delivered("/steady")) == 1 and len(receiver.delivered("/flaky")) == 1
               and len(receiver.delivered("/slow")) == 1, what="the deliveries")
    [message] = receiver.delivered("/steady")
    assert message.payload["type"] == "user.created"
    assert message.payload["data"]["id"] == user["id"]
    assert message.payload["organization_id"] == tenant.id
    assert message.headers["content-type"] == "application/json"

    # Retries: the same message (same webhook-id), each attempt signed afresh.
    tries = receiver.for_path("/flaky")
    assert [t.answered for t in tries] == [500, 500, 200]
    assert len({t.headers["webhook-id"] for t in tries}) == 1
    assert all(t.verified_by for t in tries)
    # The receiver answered before the outcome was written: wait for the log to catch up.
    wait_until(lambda: deliveries(hall, flaky["id"])[0]["status"] == "succeeded"
               and deliveries(hall, slow["id"])[0]["status"] == "succeeded", what="the delivery log")
    [logged] = deliveries(hall, flaky["id"])
    assert (logged["status"], logged["attempts"], logged["last_status_code"]) == ("succeeded", 3, 200)
    assert logged["event_type"] == "user.created"
    assert logged["id"] == tries[0].headers["webhook-id"]
    [stalled] = deliveries(hall, slow["id"])
    assert stalled["status"] == "succeeded"
    assert stalled["attempts"] == 2

    # Given up after the retry period: failed, with the last answer's excerpt (short) in the log.
    wait_until(lambda: deliveries(hall, dead["id"])[0]["status"] == "failed", timeout=RETRY_PERIOD + 10,
               what="the dead endpoint's delivery to fail")
    [failed] = deliveries(hall, dead["id"])
    assert failed["attempts"] >= 3
    assert failed["last_status_code"] == 500
    assert failed["response_excerpt"].startswith("receiver says no")
    assert len(failed["response_excerpt"]) <= 512
    assert deliveries(hall, dead["id"], status="failed") == [failed]
    assert deliveries(hall, dead["id"], status="succeeded") == []

    # Redeliver, now that the endpoint is back.
    receiver.plans["/dead"] = []
    again = hall.client.post(f"/v1/webhook-endpoints/{dead['id']}/deliveries/{failed['id']}/redeliver",
                             headers=admin(hall))
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending"
    wait_until(lambda: len(receiver.delivered("/dead")) == 1, what="the redelivery")
    wait_until(lambda: deliveries(hall, dead["id"])[0]["status"] == "succeeded", what="the redelivery's log")
    missing = hall.client.post(f"/v1/webhook-endpoints/{dead['id']}/deliveries/{uuid.uuid4()}/redeliver",
                               headers=admin(hall))
    assert missing.status_code == 404

    # A disabled endpoint gets nothing; the filter picks what each endpoint gets.
    assert hall.client.patch(f"/v1/webhook-endpoints/{steady['id']}", json={"enabled": False},
                             headers=admin(hall)).status_code == 200
    patched = hall.client.patch(f"/v1/organizations/{tenant.id}/users/{user['id']}", json={"name": "Cy"},
                                headers=auth(tenant.owner))
    assert patched.status_code == 200
    wait_until(lambda: len(receiver.delivered("/flaky")) == 2, what="the user.updated delivery")
    assert receiver.delivered("/flaky")[1].payload["type"] == "user.updated"
    assert len(receiver.for_path("/steady")) == 1
    assert len(receiver.for_path("/slow")) == 2
    for endpoint in (steady, flaky, slow, dead):
        assert hall.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin(hall)).status_code == 204


def test_a_rotated_secret_signs_beside_the_previous_one(hall: Keyhall, receiver: WebhookReceiver) -> None:
    endpoint = subscribe(hall, receiver, "/rotating", ["user.created"])
    old = endpoint["secret"]
    rotated = hall.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/secret", headers=admin(hall))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert rotated.json()["previous_secret_expires_at"] is not None
    receiver.secrets["/rotating"] = [old, new]
    make_user(hall, hall.tenant("Rotation"), "di@events.example")
    wait_until(lambda: len(receiver.delivered("/rotating")) == 1, what="the delivery")
    [message] = receiver.delivered("/rotating")
    assert message.verified_by == [old, new]
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    listed = hall.client.get("/v1/webhook-endpoints", headers=admin(hall)).json()["data"]
    assert all("secret" not in e for e in listed)
    with hall.runtime.database.engine.connect() as conn:  # stored sealed, not in the clear
        [stored] = conn.execute(text("SELECT sealed_secrets FROM webhook_endpoints WHERE id = :id"),
                                {"id": endpoint["id"]}).scalars()
    assert old not in stored
    assert new not in stored
    assert old.removeprefix("whsec_") not in stored
    assert new.removeprefix("whsec_") not in stored
    assert hall.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin(hall)).status_code == 204


def test_endpoint_input_is_checked(hall: Keyhall, receiver: WebhookReceiver) -> None:
    cases = [({"url": "ftp://example.com/hook"}, "url"), ({"url": "https://user:pw@example.com/"}, "url"),
             ({"url": receiver.url("/x"), "event_types": ["user.exploded"]}, "event_types"),
             ({"url": receiver.url("/x"), "surprise": 1}, "surprise")]
    for body, name in cases:
        response = hall.client.post("/v1/webhook-endpoints", json=body, headers=admin(hall))
        assert 400 <= response.status_code < 500, response.text
        assert name in response.text
    refused = {"ftp://example.com/hook", "https://user:pw@example.com/", receiver.url("/x")}
    stored = {e["url"] for e in hall.client.get("/v1/webhook-endpoints", headers=admin(hall)).json()["data"]}
    assert not stored & refused  # nothing half written


def test_private_webhook_urls_are_refused_unless_insecure_urls_are_allowed(tmp_path: Path,
                                                                          receiver: WebhookReceiver) -> None:
    """The SSRF guard: without KEYHALL_ALLOW_INSECURE_IDP_URLS a webhook may not point at
    loopback or private addresses (nor use plain http) — neither when it is stored nor when it is
    sent to (a name that resolved elsewhere when stored may resolve to a private address later)."""
    with fresh_database(tmp_path) as url:
        settings = make_settings(tmp_path / "data", url, allow_insecure_idp_urls=False)
        runtime = Runtime.build(settings)
        runtime.database.migrate()
        try:
            with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as client:
                strict = Keyhall(client, runtime)
                for target in ["https://127.0.0.1/hook", "https://10.0.0.8/hook", "https://[::1]:8443/hook",
                               "https://169.254.169.254/latest/meta-data", "http://hooks.example.com/"]:
                    response = client.post("/v1/webhook-endpoints", json={"url": target}, headers=admin(strict))
                    assert response.status_code == 422, (target, response.text)
                    assert response.json()["error"]["code"] == "unsafe_url"
                assert client.get("/v1/webhook-endpoints", headers=admin(strict)).json()["data"] == []

                # Stored before the name pointed inward (written directly, past the API's check):
                # the delivery is refused at connect time and retried, never sent.
                sneaky = new_endpoint(f"https://localhost:{receiver.port}/sneaky", description=None, event_types=[],
                                      enabled=True, now=utcnow())
                with runtime.database.unit_of_work() as uow:
                    uow.webhooks.add_endpoint(sneaky)
                    uow.commit()
                make_user(strict, strict.tenant("Strict"), "ed@events.example")
                counts = deliver_webhooks(runtime)
                assert (counts["attempted"], counts["retrying"], counts["succeeded"]) == (1, 1, 0)
                [attempted] = deliveries(strict, sneaky.id)
                assert attempted["last_status_code"] is None
                assert "non-public" in attempted["last_error"] or "loopback" in attempted["last_error"]
                assert receiver.for_path("/sneaky") == []
        finally:
            runtime.database.dispose()
