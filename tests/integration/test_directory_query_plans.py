"""The SCIM look-ups IdPs make on every sync use an index, on SQLite and PostgreSQL: a user by
``userName`` (case-insensitively, through ``user_name_key``) or ``externalId``, a group by
``displayName``, a group's members, a user's groups (see test_query_plans.py for the method)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from keyhall.protocols.scim.filters import parse_filter
from keyhall.storage import migrate
from keyhall.storage.engine import build_engine
from keyhall.storage.models import DirectoryGroupRow, DirectoryMembershipRow, UserRow
from keyhall.storage.repos.directories import groups_where, users_where
from tests.integration.test_query_plans import full_scans, plan
from tests.support.database import fresh_database

DIRECTORY = "00000000-0000-0000-0000-000000000001"

LOOKUPS: dict[str, Callable[[], Any]] = {
    "user by userName": lambda: select(UserRow).where(
        users_where(DIRECTORY, parse_filter('userName eq "Ann@Example.com"', "User"))).limit(200),
    "user by externalId": lambda: select(UserRow).where(
        users_where(DIRECTORY, parse_filter('externalId eq "00u1"', "User"))).limit(200),
    "group by displayName": lambda: select(DirectoryGroupRow).where(
        groups_where(DIRECTORY, parse_filter('displayName eq "Eng"', "Group"))).limit(200),
    "members of a group": lambda: select(DirectoryMembershipRow.user_id).where(
        DirectoryMembershipRow.group_id == DIRECTORY),
    "groups of a user": lambda: select(DirectoryMembershipRow.group_id).where(
        DirectoryMembershipRow.user_id == DIRECTORY),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with fresh_database(tmp_path_factory.mktemp("scim-plans")) as url:
        eng = build_engine(url)
        migrate.upgrade(eng)
        try:
            yield eng
        finally:
            eng.dispose()


@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_scim_lookup_uses_an_index(engine: Engine, name: str) -> None:
    with engine.connect() as connection:
        lines = plan(connection, LOOKUPS[name]())
        connection.rollback()
    assert lines
    assert not full_scans(engine.dialect.name, lines), f"{name} reads a whole table:\n" + "\n".join(lines)
