"""Two Keyhall instances over one database, each with its own caches (``keyhall.storage.cache``).

A change made through one instance (a connection deactivated, its IdP certificate replaced, its
domains withdrawn; an application's secret or redirect URIs changed; a signing key rotated) is seen
by the other at its very next request, although the other has the old state cached. Each test first
shows the reader really serves from its cache (its read after warming runs only the version probe).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from keyhall.app import create_app
from keyhall.core.applications import new_application
from keyhall.provider import signing
from keyhall.runtime import Runtime
from keyhall.security.api_keys import hash_secret
from tests.support.api import Keyhall, Tenant, auth
from tests.support.scim import make_directory

FIXTURES = Path(__file__).parent.parent / "fixtures" / "saml"


@pytest.fixture(scope="module")
def other(runtime: Runtime) -> Iterator[Keyhall]:
    """A second instance: the same settings and database, its own process state (caches included)."""
    second = Runtime.build(runtime.settings)
    with TestClient(create_app(second.settings, second), raise_server_exceptions=False) as client:
        yield Keyhall(client, second)
    second.database.dispose()


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture(scope="module")
def saml(keyhall: Keyhall) -> tuple[Tenant, str, str]:
    tenant = keyhall.tenant("Cache Instances")
    body = {"protocol": "saml", "name": "cached", "domains": ["cache-instances.example"],
            "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()}}
    created = keyhall.client.post(f"/v1/organizations/{tenant.slug}/connections", json=body,
                                  headers=auth(tenant.owner))
    assert created.status_code == 201, created.text
    return tenant, str(created.json()["id"]), "cache-instances.example"


def _read(hall: Keyhall, connection_id: str, domain: str) -> tuple[Any, list[str]]:
    with hall.runtime.database.unit_of_work(read_only=True) as uow:
        conn = uow.connections.get_any(connection_id)
        return conn, [c.id for c in uow.connections.by_domain(domain)]


def test_a_cached_connection_costs_one_probe(other: Keyhall, saml: tuple[Tenant, str, str]) -> None:
    _, cid, _ = saml
    _read(other, cid, saml[2])
    with statements(other.runtime) as seen, other.runtime.database.unit_of_work(read_only=True) as uow:
        assert uow.connections.get_any(cid) is not None
    work = [s for s in seen if "connections" in s]
    assert len(work) == 1, work
    assert "version" in work[0], work
    assert "connection_domains" not in work[0], work


def test_a_certificate_replaced_on_one_instance_is_used_by_the_other_at_its_next_request(
        keyhall: Keyhall, other: Keyhall, saml: tuple[Tenant, str, str]) -> None:
    tenant, cid, domain = saml
    url = f"/v1/organizations/{tenant.slug}/connections/{cid}"
    before = other.client.get(url, headers=auth(tenant.owner)).json()
    cached, _ = _read(other, cid, domain)
    changed = keyhall.client.patch(url, json={"saml": {"metadata_xml": (FIXTURES / "metadata-expired-cert.xml")
                                                       .read_text()}}, headers=auth(tenant.owner))
    assert changed.status_code == 200, changed.text
    assert changed.json()["discovered"] != before["discovered"]
    seen, _ = _read(other, cid, domain)
    assert seen.discovered == changed.json()["discovered"] != cached.discovered
    assert seen.version == cached.version + 1
    assert other.client.get(url, headers=auth(tenant.owner)).json()["discovered"] == changed.json()["discovered"]


def test_a_connection_deactivated_on_one_instance_stops_routing_on_the_other_at_its_next_request(
        keyhall: Keyhall, other: Keyhall, saml: tuple[Tenant, str, str]) -> None:
    tenant, cid, domain = saml
    url = f"/v1/organizations/{tenant.slug}/connections/{cid}"
    conn, routed = _read(other, cid, domain)
    assert routed == [cid]
    assert str(conn.status) == "active"
    assert keyhall.client.patch(url, json={"status": "inactive"}, headers=auth(tenant.owner)).status_code == 200
    conn, routed = _read(other, cid, domain)
    assert routed == []
    assert str(conn.status) == "inactive"
    assert keyhall.client.patch(url, json={"status": "active"}, headers=auth(tenant.owner)).status_code == 200
    assert _read(other, cid, domain)[1] == [cid]
    # Withdrawing the domain: no version of a connection that routes it is left to probe.
    assert keyhall.client.patch(url, json={"domains": ["moved.cache-instances.example"]},
                                headers=auth(tenant.owner)).status_code == 200
    assert _read(other, cid, domain)[1] == []
    assert _read(other, cid, "moved.cache-instances.example")[1] == [cid]


def test_a_shared_read_of_a_connection_follows_a_change_on_the_other_instance(
        keyhall: Keyhall, other: Keyhall, saml: tuple[Tenant, str, str]) -> None:
    """``get_any(shared=True)`` (a sign-in's standing, at the token endpoint) hands out one object
    per cached version, and the changed connection at the next read after a change elsewhere."""
    tenant, cid, _ = saml
    url = f"/v1/organizations/{tenant.slug}/connections/{cid}"
    assert keyhall.client.patch(url, json={"status": "active"}, headers=auth(tenant.owner)).status_code == 200
    with other.runtime.database.unit_of_work(read_only=True) as uow:
        uow.connections.get_any(cid, shared=True)  # read from the database, then cached
        first, again = uow.connections.get_any(cid, shared=True), uow.connections.get_any(cid, shared=True)
    assert first is again is not None
    assert keyhall.client.patch(url, json={"status": "inactive"}, headers=auth(tenant.owner)).status_code == 200
    with other.runtime.database.unit_of_work(read_only=True) as uow:
        after = uow.connections.get_any(cid, shared=True)
    assert after is not None
    assert str(after.status) == "inactive" != str(first.status)
    assert keyhall.client.patch(url, json={"status": "active"}, headers=auth(tenant.owner)).status_code == 200


def test_a_connection_deleted_on_one_instance_is_gone_on_the_other(keyhall: Keyhall, other: Keyhall) -> None:
    tenant = keyhall.tenant("Cache Deletions")
    body = {"protocol": "saml", "name": "doomed", "domains": ["doomed.cache-instances.example"],
            "saml": {"metadata_xml": (FIXTURES / "metadata-valid.xml").read_text()}}
    url = f"/v1/organizations/{tenant.slug}/connections"
    cid = keyhall.client.post(url, json=body, headers=auth(tenant.owner)).json()["id"]
    assert _read(other, cid, "doomed.cache-instances.example")[0] is not None
    assert keyhall.client.delete(f"{url}/{cid}", headers=auth(tenant.owner)).status_code == 204
    assert _read(other, cid, "doomed.cache-instances.example") == (None, [])


@pytest.mark.parametrize("shared", [False, True], ids=["copy", "shared"])
def test_an_application_changed_on_one_instance_is_current_on_the_other(
        keyhall: Keyhall, other: Keyhall, shared: bool) -> None:
    """Whether the reader takes its own copy or the one read-only callers share (the token endpoint)."""
    now = keyhall.runtime.clock()
    app, _ = new_application("Cached product", ["https://product.example/callback"], public=False, now=now)
    with keyhall.runtime.database.unit_of_work() as uow:
        uow.applications.add(app)
        uow.commit()
    with other.runtime.database.unit_of_work(read_only=True) as uow:
        assert uow.applications.get(app.id, shared=shared) == app  # read from the database, then cached
        first = uow.applications.get(app.id, shared=shared)
    with statements(other.runtime) as seen, other.runtime.database.unit_of_work(read_only=True) as uow:
        again = uow.applications.get(app.id, shared=shared)
        assert again == app
    assert len([s for s in seen if "applications" in s]) == 1, seen  # served from the cache after the probe
    assert (again is first) is shared  # a shared read hands out one object; a copy is the caller's own

    rotated = replace(app, secret_hash=hash_secret("a rotated secret"),
                      redirect_uris=["https://product.example/new"],
                      updated_at=now + timedelta(seconds=1))
    with keyhall.runtime.database.unit_of_work() as uow:
        uow.applications.save(rotated)
        uow.commit()
    with other.runtime.database.unit_of_work(read_only=True) as uow:
        seen_app = uow.applications.get(app.id, shared=shared)
    assert seen_app is not None
    assert seen_app.secret_hash == rotated.secret_hash != app.secret_hash
    assert seen_app.redirect_uris == ["https://product.example/new"]

    with keyhall.runtime.database.unit_of_work() as uow:
        uow.applications.delete(app.id)
        uow.commit()
    with other.runtime.database.unit_of_work(read_only=True) as uow:
        assert uow.applications.get(app.id, shared=shared) is None


def test_a_signing_key_rotated_on_one_instance_signs_and_verifies_on_the_other(
        keyhall: Keyhall, other: Keyhall) -> None:
    now = keyhall.runtime.clock()
    with other.runtime.database.unit_of_work() as uow:
        old = signing.active_key(uow.signing_keys, "ES256", now)
        uow.commit()
        old_token = signing.sign(old, {"sub": "a", "exp": int(now.timestamp()) + 60})
        assert signing.verify(old_token, uow.signing_keys, now) is not None
    with keyhall.runtime.database.unit_of_work() as uow:
        new = signing.rotate(uow.signing_keys, "ES256", now)
        uow.commit()
    with other.runtime.database.unit_of_work(read_only=True) as uow:
        assert signing.active_key(uow.signing_keys, "ES256", now).kid == new.kid != old.kid
        new_token = signing.sign(new, {"sub": "b", "exp": int(now.timestamp()) + 60})
        assert signing.verify(new_token, uow.signing_keys, now) is not None
        assert signing.verify(old_token, uow.signing_keys, now) is not None  # still published
        later = now + signing.MAX_TOKEN_LIFETIME + timedelta(minutes=6)
        assert signing.verify(old_token, uow.signing_keys, later, allow_expired=True) is None  # unpublished
        assert signing.verify(new_token, uow.signing_keys, later, allow_expired=True) is not None


def test_a_directory_token_rotated_or_deleted_on_one_instance_is_refused_by_the_other(
        keyhall: Keyhall, other: Keyhall) -> None:
    """The SCIM authentication is cached by (directory, token hash) and probed by version: the other
    instance, which has the old token cached, refuses it at its next request after a rotation, takes
    the new one, and refuses both once the directory is deleted."""
    tenant = keyhall.tenant("Cache Directories")
    directory = make_directory(keyhall, tenant)
    users = f"{directory.path}/Users"
    assert other.client.get(users, headers=directory.headers()).status_code == 200
    with statements(other.runtime) as seen:
        assert other.client.get(users, headers=directory.headers()).status_code == 200
    assert not any("FROM directories" in s and "token_hash" in s for s in seen), seen  # served from the cache
    rotated = keyhall.client.post(f"{directory.native}/token", headers=auth(tenant.owner))
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["token"]
    assert other.client.get(users, headers=directory.headers()).status_code == 401
    new_headers = {"Authorization": f"Bearer {new_token}"}
    assert other.client.get(users, headers=new_headers).status_code == 200
    assert keyhall.client.delete(directory.native, headers=auth(tenant.owner)).status_code == 204
    assert other.client.get(users, headers=new_headers).status_code == 401
