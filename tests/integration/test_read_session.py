"""A read-only unit of work (``storage.read_session.ReadSession``): the request path's prebuilt
statements on the unit's own Core connection, anything else through an ORM session over that same
connection. One connection and one transaction per unit, whichever kind of read comes first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, update

from keyhall.runtime import Runtime
from keyhall.security.secrets import SecretBox, new_key
from keyhall.storage import hot_queries
from keyhall.storage.database import Database, ReadOnlyViolation
from keyhall.storage.models import ApiKeyRow, OrganizationRow
from keyhall.storage.read_session import ReadSession


def _pool(runtime: Runtime) -> Any:
    return runtime.database.engine.pool


def _organization(runtime: Runtime) -> str:
    organization_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with runtime.database.engine.begin() as conn:
        conn.execute(insert(OrganizationRow).values(
            id=organization_id, slug=f"read-session-{organization_id[:8]}", name="Read Session",
            admins_may_configure_sso=False, short_id=organization_id[:8], created_at=now, updated_at=now))
    return organization_id


def test_prebuilt_and_orm_reads_of_a_unit_share_one_connection(runtime: Runtime) -> None:
    organization_id = _organization(runtime)
    checked_out = _pool(runtime).checkedout()
    with runtime.database.unit_of_work(read_only=True) as uow:
        assert isinstance(uow.session, ReadSession)
        assert not uow.session.in_transaction()  # made without I/O
        row = hot_queries.run(uow.session, hot_queries.ORGANIZATION_BY_ID, value=organization_id).first()
        assert row is not None
        assert row.id == organization_id
        assert uow.session.in_transaction()
        assert _pool(runtime).checkedout() == checked_out + 1
        found = uow.session.scalars(select(OrganizationRow.id).where(OrganizationRow.id == organization_id)).all()
        assert found == [organization_id]
        assert _pool(runtime).checkedout() == checked_out + 1  # the ORM read used the same connection
    assert _pool(runtime).checkedout() == checked_out


def test_an_orm_read_first_then_a_prebuilt_one_share_one_connection(runtime: Runtime) -> None:
    organization_id = _organization(runtime)
    checked_out = _pool(runtime).checkedout()
    with runtime.database.unit_of_work(read_only=True) as uow:
        assert uow.organizations.get(organization_id) is not None  # prebuilt (ORGANIZATION_BY_ID)
        assert uow.session.get(OrganizationRow, organization_id) is not None  # ORM
        assert hot_queries.run(uow.session, hot_queries.API_KEY_BY_ID, id="none").first() is None
        assert _pool(runtime).checkedout() == checked_out + 1
    assert _pool(runtime).checkedout() == checked_out


def test_a_read_only_unit_reads_again_after_it_was_closed(runtime: Runtime) -> None:
    organization_id = _organization(runtime)
    checked_out = _pool(runtime).checkedout()
    with runtime.database.unit_of_work(read_only=True) as uow:
        assert uow.organizations.get(organization_id) is not None
        runtime.database.end_reads(uow)
        assert _pool(runtime).checkedout() == checked_out
        assert not uow.session.in_transaction()
        assert uow.organizations.get(organization_id) is not None  # a new connection, a new snapshot
        assert _pool(runtime).checkedout() == checked_out + 1
    assert _pool(runtime).checkedout() == checked_out


def test_a_snapshot_holds_across_prebuilt_and_orm_reads_on_sqlite(tmp_path: Path) -> None:
    """Under WAL a deferred transaction reads one snapshot: a key written by another connection
    after the unit's first read is seen by neither kind of read. (PostgreSQL reads committed rows
    per statement, so this is SQLite's, on a database of its own whichever leg runs.)"""
    database = Database(f"sqlite:///{tmp_path / 'snapshot.db'}", SecretBox([new_key()]))
    try:
        database.migrate()
        organization_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        with database.engine.begin() as conn:
            conn.execute(insert(OrganizationRow).values(
                id=organization_id, slug="snapshot", name="Snapshot", admins_may_configure_sso=False,
                short_id="snapshot", created_at=now, updated_at=now))
        key_id = uuid.uuid4().hex
        with database.unit_of_work(read_only=True) as uow:
            assert uow.organizations.get(organization_id) is not None  # the snapshot starts here
            with database.engine.begin() as other:
                other.execute(insert(ApiKeyRow).values(
                    id=key_id, organization_id=organization_id, role="viewer", secret_hash="x", name="later",
                    created_at=now))
            assert hot_queries.run(uow.session, hot_queries.API_KEY_BY_ID, id=key_id).first() is None
            assert uow.session.get(ApiKeyRow, key_id) is None
        with database.unit_of_work(read_only=True) as uow:
            assert uow.session.get(ApiKeyRow, key_id) is not None
    finally:
        database.dispose()


def test_a_prebuilt_write_in_a_read_only_unit_is_refused_before_it_is_sent(runtime: Runtime) -> None:
    """On PostgreSQL a read-only unit runs in autocommit, where nothing would roll a write back:
    it never reaches the database."""
    organization_id = _organization(runtime)
    rename = update(OrganizationRow).where(OrganizationRow.id == bindparam("id")).values(
        name="written in a read-only unit")
    with runtime.database.unit_of_work(read_only=True) as uow, pytest.raises(ReadOnlyViolation):
        hot_queries.run(uow.session, rename, id=organization_id)
    with runtime.database.unit_of_work(read_only=True) as uow:
        organization = uow.organizations.get(organization_id)
        assert organization is not None
        assert organization.name == "Read Session"
