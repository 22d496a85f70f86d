"""A unit of work's session (``storage.unit_sessions``): the request path's prebuilt statements on the
unit's own Core connection, anything else through an ORM session over that same connection. One
connection and one transaction per unit, whichever kind of statement comes first: for a read-only unit
(``ReadSession``) one snapshot; for a writing one (``WriteSession``) one commit, or one rollback that
undoes prebuilt and ORM writes alike."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import bindparam, insert, select, update

from keyhall.errors import Conflict
from keyhall.runtime import Runtime
from keyhall.security.secrets import SecretBox, new_key
from keyhall.storage import hot_queries
from keyhall.storage.database import Database, ReadOnlyViolation
from keyhall.storage.models import ApiKeyRow, OrganizationRow
from keyhall.storage.repos._query import expire_loaded
from keyhall.storage.unit_sessions import ReadSession, WriteSession


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


# --- Writing units ---------------------------------------------------------------------------------

RENAME = update(OrganizationRow).where(OrganizationRow.id == bindparam("b_id")).values(name=bindparam("name"))


def _name(runtime: Runtime, organization_id: str) -> str:
    with runtime.database.engine.connect() as conn:
        return str(conn.execute(select(OrganizationRow.name).where(OrganizationRow.id == organization_id)).scalar())


def _key(key_id: str, organization_id: str) -> ApiKeyRow:
    return ApiKeyRow(id=key_id, organization_id=organization_id, role="viewer", secret_hash="x", name="unit sessions",
                     created_at=datetime.now(UTC))


def _key_exists(runtime: Runtime, key_id: str) -> bool:
    with runtime.database.engine.connect() as conn:
        return conn.execute(select(ApiKeyRow.id).where(ApiKeyRow.id == key_id)).first() is not None


@pytest.mark.parametrize("orm_first", [False, True], ids=["prebuilt-first", "orm-first"])
def test_a_writing_unit_commits_or_rolls_back_prebuilt_and_orm_writes_together(
        runtime: Runtime, orm_first: bool) -> None:
    organization_id = _organization(runtime)
    checked_out = _pool(runtime).checkedout()
    for outcome in ("rollback", "commit"):
        key_id = f"unit-sessions-{uuid.uuid4().hex[:12]}"
        with runtime.database.unit_of_work() as uow:
            assert isinstance(uow.session, WriteSession)
            if orm_first:
                uow.session.add(_key(key_id, organization_id))
                uow.session.flush()
            hot_queries.run(uow.session, RENAME, b_id=organization_id, name=f"Renamed ({outcome})")
            if not orm_first:
                uow.session.add(_key(key_id, organization_id))
            assert _pool(runtime).checkedout() == checked_out + 1  # one connection for both
            if outcome == "commit":
                uow.commit()
            else:
                uow.rollback()
        assert _pool(runtime).checkedout() == checked_out
        assert _key_exists(runtime, key_id) is (outcome == "commit"), outcome
    assert _name(runtime, organization_id) == "Renamed (commit)"


def test_a_clash_at_commit_undoes_the_prebuilt_writes_before_it(runtime: Runtime) -> None:
    """Nothing is half written: the ORM's insert fails at the commit's flush (a key id taken), and the
    rename sent before it on the same connection is rolled back with it."""
    organization_id = _organization(runtime)
    taken = f"unit-sessions-{uuid.uuid4().hex[:12]}"
    with runtime.database.unit_of_work() as uow:
        uow.session.add(_key(taken, organization_id))
        uow.commit()
    with runtime.database.unit_of_work() as uow:
        hot_queries.run(uow.session, RENAME, b_id=organization_id, name="Half written")
        uow.session.add(_key(taken, organization_id))
        with pytest.raises(Conflict):
            uow.commit()
    assert _name(runtime, organization_id) == "Read Session"


def test_a_writing_unit_writes_again_after_a_commit(runtime: Runtime) -> None:
    organization_id = _organization(runtime)
    with runtime.database.unit_of_work() as uow:
        hot_queries.run(uow.session, RENAME, b_id=organization_id, name="First")
        uow.commit()
        assert not uow.session.in_transaction()
        second = f"unit-sessions-{uuid.uuid4().hex[:12]}"
        uow.session.add(_key(second, organization_id))
        hot_queries.run(uow.session, RENAME, b_id=organization_id, name="Second")
        uow.commit()
        hot_queries.run(uow.session, RENAME, b_id=organization_id, name="Never")  # not committed
    assert _name(runtime, organization_id) == "Second"
    assert _key_exists(runtime, second)


def test_a_prebuilt_update_expires_the_orm_copy_and_makes_no_orm_session_when_none_was_used(
        runtime: Runtime) -> None:
    """``repos._query.expire_loaded``: an ORM copy read before a prebuilt update is stale and re-read;
    a unit that never used the ORM holds no copy, and asking must not make its ORM session."""
    organization_id = _organization(runtime)
    with runtime.database.unit_of_work() as uow:
        hot_queries.run(uow.session, RENAME, b_id=organization_id, name="Core only")
        expire_loaded(uow.session, OrganizationRow, organization_id)
        assert not cast(WriteSession, uow.session).orm_in_use
        loaded = uow.session.get(OrganizationRow, organization_id)
        assert loaded is not None
        assert loaded.name == "Core only"
        hot_queries.run(uow.session, RENAME, b_id=organization_id, name="Renamed around the ORM")
        expire_loaded(uow.session, OrganizationRow, organization_id)
        assert uow.session.get(OrganizationRow, organization_id).name == "Renamed around the ORM"
        uow.commit()
