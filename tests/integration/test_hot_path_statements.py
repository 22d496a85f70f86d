"""How many SQL statements, in which transactions, the hot API paths run (SQLite or PostgreSQL).

Counted with an engine event around one request each, so that a change that adds a round trip to a
hot path, or makes a read take SQLite's write lock again, fails here. A read-only request (an
API-key ``GET``) is one deferred transaction shared by the key's lookup and the handler; a write
that slips into one is refused, not raced for the lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update

from keyhall.runtime import Runtime
from keyhall.storage.database import ReadOnlyViolation
from keyhall.storage.models import ApiKeyRow
from tests.support.api import Keyhall, Tenant, auth

FIXTURES = Path(__file__).parent.parent / "fixtures" / "saml"

#: The most statements each path may run (transaction control not counted): key, organization,
#: and the connection's version probe for a read (the connection itself comes from the cache, see
#: keyhall.storage.cache); for a change, key, organization, the locking version probe (and, the
#: connection not yet cached here, its row and domains), the domain checks (verified elsewhere,
#: claimed), the version-checked update (domains that did not change are not rewritten), the audit
#: record, and the event that announces it with the webhook subscriptions it is queued for.
GET_CONNECTION_MAX = 3
PATCH_CONNECTION_MAX = 11


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split()))

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _control(statement: str) -> bool:
    return statement.split(" ")[0].upper() in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def _counts(seen: list[str]) -> int:
    """How many rate-limit counts the request wrote (each in a write transaction of its own)."""
    return sum(1 for s in seen if s.upper().startswith("INSERT INTO RATE_COUNTERS"))


def _work(seen: list[str]) -> list[str]:
    """The statements that are not transaction control nor the rate-limit counter."""
    return [s for s in seen if not _control(s) and "rate_counters" not in s]


@pytest.fixture(scope="module")
def connection(keyhall: Keyhall) -> tuple[Tenant, str]:
    tenant = keyhall.tenant("Hot Path Statements")
    body = {"protocol": "saml", "name": "hot-path", "domains": ["hot-path.example"],
            "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()}}
    created = keyhall.client.post(f"/v1/organizations/{tenant.slug}/connections", json=body,
                                  headers=auth(tenant.owner))
    assert created.status_code == 201, created.text
    return tenant, str(created.json()["id"])


def test_get_of_a_connection_is_one_deferred_transaction_of_few_reads(
        keyhall: Keyhall, connection: tuple[Tenant, str]) -> None:
    tenant, connection_id = connection
    url = f"/v1/organizations/{tenant.slug}/connections/{connection_id}"
    keyhall.client.get(url, headers=auth(tenant.owner))  # warm: first-use work is not the hot path
    with statements(keyhall.runtime) as seen:
        response = keyhall.client.get(url, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    work = _work(seen)
    assert all(s.upper().startswith("SELECT") for s in work), work
    assert len(work) <= GET_CONNECTION_MAX, work
    if keyhall.runtime.database.backend == "sqlite":  # one deferred transaction, besides the counter's own
        begins = sorted(s for s in seen if s.upper().startswith("BEGIN"))
        assert begins == ["BEGIN"] + ["BEGIN IMMEDIATE"] * _counts(seen)


def test_get_of_a_connection_by_organization_id_skips_the_organization_read(
        keyhall: Keyhall, connection: tuple[Tenant, str]) -> None:
    """By id, the organization is not read: the connection found under it proves it exists. Key and
    probe, for an organization key and for an instance key alike."""
    tenant, connection_id = connection
    url = f"/v1/organizations/{tenant.id}/connections/{connection_id}"
    for token in (tenant.owner, keyhall.instance_token):
        keyhall.client.get(url, headers=auth(token))
        with statements(keyhall.runtime) as seen:
            response = keyhall.client.get(url, headers=auth(token))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == connection_id
        work = _work(seen)
        assert len(work) == GET_CONNECTION_MAX - 1, work
        assert not any("FROM organizations" in s for s in work), work


def test_get_of_a_connection_by_organization_id_answers_misses_as_before(
        keyhall: Keyhall, connection: tuple[Tenant, str]) -> None:
    """A missing organization, another organization's id and a missing connection each keep their
    own 404: the organization is read when the connection is not found."""
    tenant, connection_id = connection
    other = keyhall.tenant("Hot Path Other")
    missing = "00000000-0000-4000-8000-000000000000"
    cases = [
        (f"/v1/organizations/{missing}/connections/{connection_id}", keyhall.instance_token, "organization not found"),
        (f"/v1/organizations/{other.id}/connections/{connection_id}", tenant.owner, "organization not found"),
        (f"/v1/organizations/{other.id}/connections/{connection_id}", keyhall.instance_token, "connection not found"),
        (f"/v1/organizations/{tenant.id}/connections/{connection_id}", other.owner, "organization not found"),
        (f"/v1/organizations/{tenant.id}/connections/{missing}", tenant.owner, "connection not found"),
        (f"/v1/organizations/{tenant.id.upper()}/connections/{missing}", tenant.owner, "connection not found"),
    ]
    for url, token, message in cases:
        response = keyhall.client.get(url, headers=auth(token))
        assert response.status_code == 404, (url, response.text)
        assert response.json()["error"]["message"] == message, (url, response.text)
    upper = keyhall.client.get(f"/v1/organizations/{tenant.id.upper()}/connections/{connection_id}",
                               headers=auth(tenant.owner))
    assert upper.status_code == 200, upper.text


def test_patch_of_a_connection_reads_its_key_then_takes_the_write_lock_up_front(
        keyhall: Keyhall, connection: tuple[Tenant, str]) -> None:
    tenant, connection_id = connection
    url = f"/v1/organizations/{tenant.slug}/connections/{connection_id}"
    with statements(keyhall.runtime) as seen:
        response = keyhall.client.patch(url, json={"display_name": "Hot path"}, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    # PostgreSQL: one more, the event log's ordering lock (core.events: a reader following ``after``
    # never skips an event committed late).
    bound = PATCH_CONNECTION_MAX + (1 if keyhall.runtime.database.backend == "postgresql" else 0)
    assert len(_work(seen)) <= bound, _work(seen)
    if keyhall.runtime.database.backend == "sqlite":
        # The key in a deferred read of its own (no write lock taken or waited for), then the change
        # in one write transaction that takes the lock at its start (besides the counter's own).
        begins = [i for i, s in enumerate(seen) if s.upper().startswith("BEGIN")]
        assert [seen[i] for i in begins] == ["BEGIN"] + ["BEGIN IMMEDIATE"] * (1 + _counts(seen)), seen
        key_read = next(i for i, s in enumerate(seen) if "FROM api_keys" in s)
        assert begins[0] < key_read < begins[1], seen


def test_a_write_in_a_read_only_unit_of_work_is_refused(runtime: Runtime) -> None:
    with runtime.database.unit_of_work(read_only=True) as uow:
        with pytest.raises(ReadOnlyViolation):
            uow.session.execute(update(ApiKeyRow).where(ApiKeyRow.id == "none").values(name="x"))
        uow.session.rollback()
        uow.session.add(ApiKeyRow(id="read-only-test", organization_id=None, role=None, secret_hash="x", name="x"))
        with pytest.raises(ReadOnlyViolation):
            uow.session.flush()


def test_patch_writes_only_the_domains_that_changed_and_keeps_their_order(
        keyhall: Keyhall, connection: tuple[Tenant, str]) -> None:
    tenant, connection_id = connection
    url = f"/v1/organizations/{tenant.slug}/connections/{connection_id}"
    steps = (["hot-path.example", "b.hot-path.example", "c.hot-path.example"],
             ["c.hot-path.example", "hot-path.example", "d.hot-path.example"],
             ["d.hot-path.example", "c.hot-path.example", "hot-path.example"])
    for domains in steps:
        with statements(keyhall.runtime) as seen:
            response = keyhall.client.patch(url, json={"domains": domains}, headers=auth(tenant.owner))
        assert response.status_code == 200, response.text
        assert response.json()["domains"] == domains
        cached = keyhall.client.get(url, headers=auth(tenant.owner)).json()  # what the PATCH cached
        keyhall.runtime.database.caches.clear()
        assert keyhall.client.get(url, headers=auth(tenant.owner)).json() == cached
        assert cached["domains"] == domains
        with keyhall.runtime.database.unit_of_work(read_only=True) as uow:
            for name in ("b.hot-path.example", *domains):
                routed = [c.id for c in uow.connections.by_domain(name)]
                assert routed == ([connection_id] if name in domains else []), name
    assert not any(s.upper().startswith("DELETE FROM CONNECTION_DOMAINS") for s in seen), seen  # a reorder
    with statements(keyhall.runtime) as seen:
        response = keyhall.client.patch(url, json={"display_name": "Same domains"}, headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    assert not any("connection_domains" in s.lower() for s in _work(seen) if not s.upper().startswith("SELECT"))
    restored = keyhall.client.patch(url, json={"domains": ["hot-path.example"]}, headers=auth(tenant.owner))
    assert restored.status_code == 200, restored.text
    assert restored.json()["domains"] == ["hot-path.example"]


def test_the_saml_replay_cache_is_one_statement_without_a_savepoint(runtime: Runtime) -> None:
    now = datetime.now(UTC)
    connection_id, assertion_id = str(uuid.uuid4()), "_" + uuid.uuid4().hex
    with runtime.database.unit_of_work() as uow:
        with statements(runtime) as seen:
            first = uow.replays.remember(connection_id, assertion_id, now + timedelta(minutes=5), now)
        again = uow.replays.remember(connection_id, assertion_id, now + timedelta(minutes=5), now)
        uow.commit()
    assert (first, again) == (True, False)
    assert len(_work(seen)) == 1, seen
    assert not any(s.upper().startswith(("SAVEPOINT", "DELETE")) for s in seen), seen
    with runtime.database.unit_of_work() as uow:  # once expired, the id is taken over, and held again
        later = now + timedelta(minutes=6)
        assert uow.replays.remember(connection_id, assertion_id, later + timedelta(minutes=5), later) is True
        assert uow.replays.remember(connection_id, assertion_id, later + timedelta(minutes=5), later) is False
        assert uow.replays.remember(str(uuid.uuid4()), assertion_id, later, now) is True  # per connection
        uow.commit()


def test_a_get_sends_the_bytes_the_response_model_renders_for_that_version(
        keyhall: Keyhall, connection: tuple[Tenant, str]) -> None:
    """The GET of a connection sends bodies kept per version (api.native.rendered); the PATCH's
    answer is FastAPI's own rendering of the same model: the two agree byte for byte, and a change
    is seen at once."""
    tenant, connection_id = connection
    url = f"/v1/organizations/{tenant.id}/connections/{connection_id}"
    for name in ("Rendered once", "Rendered twice"):
        patched = keyhall.client.patch(url, json={"display_name": name}, headers=auth(tenant.owner))
        assert patched.status_code == 200, patched.text
        for _ in range(2):  # the first GET renders and keeps, the second sends what was kept
            got = keyhall.client.get(url, headers=auth(tenant.owner))
            assert got.status_code == 200, got.text
            assert got.content == patched.content
            assert got.json()["display_name"] == name
            assert got.headers["content-type"] == patched.headers["content-type"] == "application/json"
            assert got.headers["etag"] == patched.headers["etag"]
