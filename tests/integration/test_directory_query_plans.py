"""The SCIM look-ups IdPs make on every sync use an index, on SQLite and PostgreSQL: a user by
``userName`` (case-insensitively, through ``user_name_key``) or ``externalId``, a group by
``displayName``, a group's members, a user's groups (see test_query_plans.py for the method)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from keyhall.core.directories import DirectoryUser
from keyhall.protocols.scim.filters import parse_filter
from keyhall.storage import migrate
from keyhall.storage.engine import build_engine
from keyhall.storage.models import DirectoryGroupRow, DirectoryMembershipRow, DirectoryRow, OrganizationRow, UserRow
from keyhall.storage.repos.directories import (
    USER_BY_NAME_KEY,
    SqlDirectoryUsers,
    count_of,
    groups_where,
    users_page,
    users_where,
)
from tests.integration.test_query_plans import full_scans, plan
from tests.support.database import fresh_database

DIRECTORY = "00000000-0000-0000-0000-000000000001"
OTHER_DIRECTORY = "00000000-0000-0000-0000-000000000002"

def _users(filter_text: str | None) -> Any:
    return users_where(DIRECTORY, parse_filter(filter_text, "User") if filter_text else None)


LOOKUPS: dict[str, Callable[[], Any]] = {
    # the page SqlDirectoryUsers.list_slice reads, and the count behind totalResults when a page is full
    "user by userName": lambda: users_page(_users('userName eq "Ann@Example.com"'), offset=0, limit=200),
    # the prebuilt statement of exactly ``userName eq "..."`` on a first page, the user's groups joined
    # (SqlDirectoryUsers.with_groups_by_user_name)
    "user by userName, prebuilt": lambda: USER_BY_NAME_KEY.params(directory_id=DIRECTORY, key="ann@example.com"),
    "user by externalId": lambda: users_page(_users('externalId eq "00u1"'), offset=0, limit=200),
    "count of users by userName": lambda: count_of(UserRow.__table__, _users('userName eq "Ann@Example.com"')),
    "count of a directory's users": lambda: count_of(UserRow.__table__, _users(None)),
    "group by displayName": lambda: select(DirectoryGroupRow).where(
        groups_where(DIRECTORY, parse_filter('displayName eq "Eng"', "Group"))).limit(200),
    "members of a group": lambda: select(DirectoryMembershipRow.user_id).where(
        DirectoryMembershipRow.group_id == DIRECTORY),
    "groups of a user": lambda: select(DirectoryMembershipRow.group_id).where(
        DirectoryMembershipRow.user_id == DIRECTORY),
}


def _seed(engine: Engine) -> None:
    """Two directories of 2,000 users each, in two of 20 groups each, then ANALYZE: the planners
    decide on statistics of a directory that has users and memberships (an empty table lets
    PostgreSQL pick any index that starts with directory_id, and then filter a 100,000-user
    directory row by row; or join a user's groups by reading a whole index)."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with Session(engine) as session:
        for number, directory_id in enumerate((DIRECTORY, OTHER_DIRECTORY)):
            org = str(uuid.uuid4())
            session.execute(insert(OrganizationRow), [dict(
                id=org, slug=f"plans-{number}", name="Plans", short_id=f"plans{number}", created_at=now,
                updated_at=now)])
            session.execute(insert(DirectoryRow), [dict(
                id=directory_id, organization_id=org, name="D", provider="okta", token_hash="0" * 64,
                token_hint="0000", created_at=now, updated_at=now, token_rotated_at=now, version=1)])
            users = [DirectoryUser(
                id=str(uuid.uuid4()), organization_id=org, directory_id=directory_id, user_name=f"U{i}@example.com",
                external_id=f"00u{i}", active=True, attributes={}, email=f"u{i}@example.com", created_at=now,
                updated_at=now) for i in range(2000)]
            SqlDirectoryUsers(session).add_many(users)
            groups = [str(uuid.uuid4()) for _ in range(20)]
            session.execute(insert(DirectoryGroupRow), [dict(
                id=group_id, organization_id=org, directory_id=directory_id, display_name=f"G{g}",
                display_name_key=f"g{g}", attributes={}, created_at=now, updated_at=now, version=1)
                for g, group_id in enumerate(groups)])
            session.execute(insert(DirectoryMembershipRow), [  # two groups each
                dict(group_id=groups[(i + k) % len(groups)], user_id=user.id)
                for i, user in enumerate(users) for k in (0, 7)])
        session.commit()
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with fresh_database(tmp_path_factory.mktemp("scim-plans")) as url:
        eng = build_engine(url)
        migrate.upgrade(eng)
        _seed(eng)
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


@pytest.mark.parametrize("name", ["user by userName", "user by userName, prebuilt", "count of users by userName"])
def test_user_name_lookup_uses_the_case_insensitive_index(engine: Engine, name: str) -> None:
    """``userName eq`` compares the lower-cased copy, so the unique index on (directory_id,
    user_name_key) answers it, the count of totalResults included."""
    with engine.connect() as connection:
        lines = plan(connection, LOOKUPS[name]())
        connection.rollback()
    # SQLite: "SEARCH users USING [COVERING] INDEX ... (directory_id=? AND user_name_key=?)";
    # PostgreSQL: "... using ux_users_directory_user_name cond ((directory_id = ...) AND (user_name_key = ...))"
    assert any(("USING" in line or " using " in line) and "user_name_key" in line for line in lines), \
        "\n".join(lines)
