"""Repositories of SCIM directories: the directories, their users (rows of ``users``), their groups
and memberships; and the users repository that sign-in uses, which also finds directory users."""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.directories import (
    Counts,
    Directory,
    DirectoryGroup,
    DirectoryProvider,
    DirectoryUser,
    Member,
)
from keyhall.core.ports import Slice
from keyhall.core.users import User
from keyhall.errors import Conflict
from keyhall.protocols.scim.predicates import Predicate
from keyhall.storage import hot_queries
from keyhall.storage.cache import VersionedCache
from keyhall.storage.models import DirectoryGroupRow, DirectoryMembershipRow, DirectoryRow, UserRow
from keyhall.storage.repos._query import flush as _flush
from keyhall.storage.repos.scim_queries import USERS, group_condition, user_condition
from keyhall.storage.repos.users import SqlUsers

_DIRECTORY_FIELDS = ("id", "organization_id", "name", "token_hash", "token_hint", "created_at", "updated_at",
                     "token_rotated_at", "last_sync_at", "version")
#: at most this many ids per IN (...) list: SQLite's limit on bound parameters is 32766
_CHUNK = 5000

#: Statements of every SCIM request, built once: a statement object reused keeps its compiled form
#: and cache key, where one built per call pays SQLAlchemy's construction and keying each time.
_INSERT_USER = insert(cast(Table, UserRow.__table__))
_PROBE = select(DirectoryRow.__table__.c.version, DirectoryRow.__table__.c.last_sync_at).where(
    DirectoryRow.__table__.c.id == bindparam("directory_id"))
_SET_GROUPS = update(cast(Table, UserRow.__table__)).where(USERS.id == bindparam("user_id")).values(
    groups=bindparam("claim"))
_MEMBERSHIPS, _GROUPS = DirectoryMembershipRow.__table__.c, DirectoryGroupRow.__table__.c
_GROUPS_OF = (select(_MEMBERSHIPS.user_id, _GROUPS.id, _GROUPS.display_name)
              .join_from(DirectoryMembershipRow.__table__, DirectoryGroupRow.__table__,
                         _GROUPS.id == _MEMBERSHIPS.group_id)
              .where(_MEMBERSHIPS.user_id.in_(bindparam("user_ids", expanding=True)))
              .order_by(_GROUPS.display_name))

_GROUPS_OF_ONE = (select(_MEMBERSHIPS.user_id, _GROUPS.id, _GROUPS.display_name)
                  .join_from(DirectoryMembershipRow.__table__, DirectoryGroupRow.__table__,
                             _GROUPS.id == _MEMBERSHIPS.group_id)
                  .where(_MEMBERSHIPS.user_id == bindparam("user_id"))
                  .order_by(_GROUPS.display_name))
#: ``userName eq "..."``, an IdP's lookup before each create, with the user's groups: built once (the
#: pair is unique, so one user at most, on as many rows as they have groups, or one row without)
USER_BY_NAME_KEY = (select(UserRow.__table__, _GROUPS.id.label("group_id"), _GROUPS.display_name.label("group_display"))
                    .outerjoin(DirectoryMembershipRow.__table__, _MEMBERSHIPS.user_id == USERS.id)
                    .outerjoin(DirectoryGroupRow.__table__, _GROUPS.id == _MEMBERSHIPS.group_id)
                    .where(USERS.directory_id == bindparam("directory_id"), USERS.user_name_key == bindparam("key"))
                    .order_by(_GROUPS.display_name))


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def users_where(directory_id: str, where: Predicate | None) -> Any:
    """The condition of a directory's user list (tests/integration/test_directory_query_plans.py)."""
    condition = USERS.directory_id == directory_id
    return condition if where is None else condition & user_condition(where)


def users_page(condition: Any, *, offset: int, limit: int) -> Select[Any]:
    """A page of the users ``condition`` (``users_where``) selects, as ``SqlDirectoryUsers.list_slice``
    reads it (and the query-plan test checks it)."""
    return select(UserRow.__table__).where(condition).order_by(USERS.created_at, USERS.id).offset(offset).limit(limit)


def count_of(table: Any, condition: Any) -> Select[Any]:
    """How many rows match: ``totalResults`` when one page does not tell."""
    return select(func.count()).select_from(table).where(condition)


def groups_where(directory_id: str, where: Predicate | None) -> Any:
    condition = DirectoryGroupRow.directory_id == directory_id
    return condition if where is None else condition & group_condition(where)


def _total(session: Session, table: Any, condition: Any, offset: int, limit: int, found: int) -> int:
    """How many rows match: known without counting when the first page was not full (a lookup
    such as ``userName eq`` is then one indexed query)."""
    if offset == 0 and limit > 0 and found < limit:
        return found
    return int(session.scalar(count_of(table, condition)) or 0)


class SqlDirectories:
    def __init__(self, session: Session, cache: VersionedCache[tuple[str, str], Directory] | None = None):
        self.session = session
        self.cache = cache if cache is not None else VersionedCache(1)

    @staticmethod
    def _entity(row: DirectoryRow) -> Directory:
        values: dict[str, Any] = {name: getattr(row, name) for name in _DIRECTORY_FIELDS}
        return Directory(provider=DirectoryProvider(row.provider), **values)

    def get(self, directory_id: str) -> Directory | None:
        row = self.session.get(DirectoryRow, directory_id[:36])
        return self._entity(row) if row else None

    def authenticated(self, directory_id: str, token_hash: str) -> Directory | None:
        key = (directory_id[:36], token_hash)
        probe: Any = hot_queries.run(self.session, _PROBE, directory_id=key[0]).first()
        if probe is None:
            return None
        version, last_sync_at = probe
        directory = self.cache.get(key, version)
        if directory is None:
            directory = self.get(key[0])
            if directory is None or not hmac.compare_digest(directory.token_hash, token_hash):
                return None
            self.cache.put(key, directory.version, directory)
        directory.last_sync_at = last_sync_at  # recorded without a version bump (``touch``)
        return directory

    def for_organization(self, organization_id: str) -> list[Directory]:
        rows = self.session.scalars(select(DirectoryRow).where(DirectoryRow.organization_id == organization_id)
                                    .order_by(DirectoryRow.created_at, DirectoryRow.id))
        return [self._entity(r) for r in rows]

    def counts(self, directory_ids: Sequence[str]) -> dict[str, Counts]:
        if not directory_ids:
            return {}
        users = {d: n for d, n in self.session.execute(
            select(UserRow.directory_id, func.count()).where(UserRow.directory_id.in_(directory_ids))
            .group_by(UserRow.directory_id))}
        groups = {d: n for d, n in self.session.execute(
            select(DirectoryGroupRow.directory_id, func.count())
            .where(DirectoryGroupRow.directory_id.in_(directory_ids))
            .group_by(DirectoryGroupRow.directory_id))}
        return {i: Counts(users=int(users.get(i, 0)), groups=int(groups.get(i, 0))) for i in directory_ids}

    def _values(self, directory: Directory) -> dict[str, Any]:
        values = {name: getattr(directory, name) for name in _DIRECTORY_FIELDS}
        values["provider"] = directory.provider.value
        return values

    def add(self, directory: Directory) -> None:
        self.session.add(DirectoryRow(**self._values(directory)))
        _flush(self.session)

    def save(self, directory: Directory) -> None:
        directory.version += 1
        values = self._values(directory)
        self.session.execute(update(DirectoryRow).where(DirectoryRow.id == directory.id).values(**values))

    def touch(self, directory_id: str, now: datetime) -> None:
        self.session.execute(update(DirectoryRow).where(DirectoryRow.id == directory_id).values(last_sync_at=now))

    def delete(self, directory_id: str) -> None:
        self.session.execute(delete(DirectoryRow).where(DirectoryRow.id == directory_id))


_PROFILE = ("email", "name", "given_name", "family_name")


class SqlDirectoryUsers:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: Any) -> DirectoryUser:
        """From a mapped ``UserRow`` or a plain row of the table (both name the columns)."""
        assert row.directory_id is not None
        return DirectoryUser(
            id=row.id, organization_id=row.organization_id, directory_id=row.directory_id,
            user_name=row.user_name or "", external_id=row.external_id, active=not row.disabled,
            attributes=dict(row.scim_attributes or {}), email=row.email, name=row.name, given_name=row.given_name,
            family_name=row.family_name, created_at=row.created_at, updated_at=row.updated_at, version=row.version)

    def _row(self, directory_id: str, user_id: str) -> UserRow | None:
        return self.session.scalar(select(UserRow).where(UserRow.id == user_id[:36],
                                                         UserRow.directory_id == directory_id))

    def get(self, directory_id: str, user_id: str) -> DirectoryUser | None:
        row = self._row(directory_id, user_id)
        return self._entity(row) if row else None

    def user_name_taken(self, directory_id: str, user_name: str, *, exclude_id: str | None) -> bool:
        query = select(UserRow.id).where(UserRow.directory_id == directory_id,
                                         UserRow.user_name_key == user_name.lower())
        if exclude_id:
            query = query.where(UserRow.id != exclude_id)
        return self.session.scalar(query.limit(1)) is not None

    def _values(self, user: DirectoryUser) -> dict[str, Any]:
        values: dict[str, Any] = {name: getattr(user, name) for name in _PROFILE}
        values.update(user_name=user.user_name, user_name_key=user.user_name.lower(), external_id=user.external_id,
                      disabled=not user.active,
                      scim_attributes=user.attributes, updated_at=user.updated_at)
        return values

    def _new_row(self, user: DirectoryUser) -> dict[str, Any]:
        return dict(id=user.id, organization_id=user.organization_id, connection_id=None, subject=None,
                    email_verified=False, username=None, picture=None, locale=None, phone_number=None, groups=[],
                    password_hash=None, created_at=user.created_at, last_login_at=None, version=user.version,
                    directory_id=user.directory_id, **self._values(user))

    def add(self, user: DirectoryUser) -> None:
        # One INSERT on the table (not through the ORM's flush): the uniqueness of userName is this
        # statement's to refuse, so creating a user needs no lookup first.
        try:
            hot_queries.run(self.session, _INSERT_USER, **self._new_row(user))
        except IntegrityError as exc:  # the one unique key a new user can clash on: (directory, userName)
            raise Conflict(f"userName: {user.user_name!r} is already taken in this directory", field="userName",
                           details={"scim_type": "uniqueness"}) from exc

    def add_many(self, users: Sequence[DirectoryUser]) -> None:
        """Bulk insert (seeding and imports): one statement per chunk."""
        for start in range(0, len(users), _CHUNK):
            self.session.execute(insert(UserRow), [self._new_row(u) for u in users[start:start + _CHUNK]])

    def save(self, user: DirectoryUser, *, expected_version: int) -> bool:
        result = self.session.execute(
            update(UserRow).where(UserRow.id == user.id, UserRow.version == expected_version)
            # a new address is not vouched for until a sign-in vouches for it
            .values(**self._values(user), version=UserRow.version + 1,
                    email_verified=case((UserRow.email == user.email, UserRow.email_verified), else_=False)))
        if getattr(result, "rowcount", 0) != 1:
            return False
        user.version = expected_version + 1
        _flush(self.session)
        return True

    def delete(self, user_id: str) -> None:
        self.session.execute(delete(DirectoryMembershipRow).where(DirectoryMembershipRow.user_id == user_id))
        self.session.execute(delete(UserRow).where(UserRow.id == user_id))

    def ids(self, directory_id: str) -> list[str]:
        return list(self.session.scalars(select(UserRow.id).where(UserRow.directory_id == directory_id)))

    def existing(self, directory_id: str, user_ids: Collection[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for chunk in _chunks(sorted(set(user_ids))):
            rows = self.session.execute(select(UserRow.id, UserRow.name, UserRow.user_name).where(
                UserRow.directory_id == directory_id, UserRow.id.in_(chunk)))
            found.update({row_id: name or user_name for row_id, name, user_name in rows})
        return found

    def with_groups_by_user_name(self, directory_id: str,
                                 user_name: str) -> tuple[DirectoryUser, list[tuple[str, str]]] | None:
        rows: Any = hot_queries.run(self.session, USER_BY_NAME_KEY, directory_id=directory_id, key=user_name.lower())
        first = None
        groups: list[tuple[str, str]] = []
        for row in rows:
            first = first if first is not None else row
            if row.group_id is not None:
                groups.append((row.group_id, row.group_display))
        return (self._entity(first), groups) if first is not None else None

    def list_slice(self, directory_id: str, where: Predicate | None, *, offset: int,
                   limit: int) -> Slice[DirectoryUser]:
        condition = users_where(directory_id, where)
        rows: Any = [] if limit <= 0 else self.session.execute(users_page(condition, offset=offset, limit=limit))
        items = [self._entity(r) for r in rows]
        return Slice(items=items, total=_total(self.session, UserRow.__table__, condition, offset, limit, len(items)))

    def groups_of(self, user_ids: Collection[str]) -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = {}
        if len(user_ids) == 1:  # one user (a read, a lookup): no list to expand into the statement
            rows: Any = hot_queries.run(self.session, _GROUPS_OF_ONE, user_id=next(iter(user_ids)))
            for user_id, group_id, display in rows:
                found.setdefault(user_id, []).append((group_id, display))
            return found
        for chunk in _chunks(sorted(set(user_ids))):
            rows = self.session.execute(_GROUPS_OF, {"user_ids": list(chunk)})
            for user_id, group_id, display in rows:
                found.setdefault(user_id, []).append((group_id, display))
        return found

    def linked_connections(self, user_ids: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(set(user_ids))):
            rows = self.session.execute(select(USERS.id, USERS.connection_id).where(
                USERS.id.in_(chunk), USERS.connection_id.is_not(None)))
            found.update({user_id: connection_id for user_id, connection_id in rows})
        return found

    def set_groups_claims(self, claims: Mapping[str, list[str]]) -> None:
        if claims:
            self.session.execute(_SET_GROUPS, [{"user_id": u, "claim": g} for u, g in claims.items()])


class SqlDirectoryGroups:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: DirectoryGroupRow) -> DirectoryGroup:
        return DirectoryGroup(id=row.id, organization_id=row.organization_id, directory_id=row.directory_id,
                              display_name=row.display_name, external_id=row.external_id,
                              attributes=dict(row.attributes or {}), created_at=row.created_at,
                              updated_at=row.updated_at, version=row.version)

    def get(self, directory_id: str, group_id: str) -> DirectoryGroup | None:
        row = self.session.scalar(select(DirectoryGroupRow).where(DirectoryGroupRow.id == group_id[:36],
                                                                  DirectoryGroupRow.directory_id == directory_id))
        return self._entity(row) if row else None

    def add(self, group: DirectoryGroup) -> None:
        self.session.add(DirectoryGroupRow(**vars(group), display_name_key=group.display_name.lower()))
        _flush(self.session)

    def save(self, group: DirectoryGroup, *, expected_version: int) -> bool:
        values = {k: v for k, v in vars(group).items() if k not in ("id", "version", "created_at")}
        result = self.session.execute(
            update(DirectoryGroupRow).where(DirectoryGroupRow.id == group.id,
                                            DirectoryGroupRow.version == expected_version)
            .values(**values, display_name_key=group.display_name.lower(), version=DirectoryGroupRow.version + 1))
        if getattr(result, "rowcount", 0) != 1:
            return False
        group.version = expected_version + 1
        return True

    def delete(self, group_id: str) -> None:
        self.session.execute(delete(DirectoryMembershipRow).where(DirectoryMembershipRow.group_id == group_id))
        self.session.execute(delete(DirectoryGroupRow).where(DirectoryGroupRow.id == group_id))

    def list_slice(self, directory_id: str, where: Predicate | None, *, offset: int,
                   limit: int) -> Slice[DirectoryGroup]:
        condition = groups_where(directory_id, where)
        rows: Any = [] if limit <= 0 else self.session.scalars(
            select(DirectoryGroupRow).where(condition).order_by(DirectoryGroupRow.created_at, DirectoryGroupRow.id)
            .offset(offset).limit(limit))
        items = [self._entity(r) for r in rows]
        return Slice(items=items, total=_total(self.session, DirectoryGroupRow, condition, offset, limit, len(items)))

    def members(self, group_ids: Collection[str]) -> dict[str, list[Member]]:
        found: dict[str, list[Member]] = {}
        for chunk in _chunks(sorted(set(group_ids))):
            rows = self.session.execute(
                select(DirectoryMembershipRow.group_id, UserRow.id, DirectoryMembershipRow.display, UserRow.name,
                       UserRow.user_name)
                .join(UserRow, UserRow.id == DirectoryMembershipRow.user_id)
                .where(DirectoryMembershipRow.group_id.in_(chunk)).order_by(UserRow.created_at, UserRow.id))
            for group_id, user_id, display, name, user_name in rows:
                found.setdefault(group_id, []).append(Member(id=user_id, display=display or name or user_name))
        return found

    def member_ids(self, group_id: str) -> set[str]:
        return set(self.session.scalars(select(DirectoryMembershipRow.user_id)
                                        .where(DirectoryMembershipRow.group_id == group_id)))

    def add_members(self, group_id: str, user_ids: Collection[str], displays: Mapping[str, str]) -> None:
        ids = sorted(set(user_ids))
        for start in range(0, len(ids), _CHUNK):
            self.session.execute(insert(DirectoryMembershipRow), [
                {"group_id": group_id, "user_id": u, "display": (displays.get(u) or None)}
                for u in ids[start:start + _CHUNK]])

    def remove_members(self, group_id: str, user_ids: Collection[str]) -> None:
        for chunk in _chunks(sorted(set(user_ids))):
            self.session.execute(delete(DirectoryMembershipRow).where(DirectoryMembershipRow.group_id == group_id,
                                                                      DirectoryMembershipRow.user_id.in_(chunk)))


class SqlUsersWithDirectories(SqlUsers):
    """The users repository sign-in uses, which also finds the users directories provisioned."""

    def local_by_email(self, organization_id: str, email: str) -> User | None:
        """A local password account (a directory user has no connection either, but is not one)."""
        row = self.session.scalar(select(UserRow).where(
            UserRow.organization_id == organization_id, UserRow.connection_id.is_(None),
            UserRow.directory_id.is_(None), UserRow.email == email.lower()))
        return self._entity(row) if row else None

    def local_accounts(self, email: str) -> list[User]:
        rows = self.session.scalars(select(UserRow).where(
            UserRow.connection_id.is_(None), UserRow.directory_id.is_(None), UserRow.email == email.lower()).limit(20))
        return [self._entity(r) for r in rows]

    def directory_user(self, organization_id: str, *, email: str | None, external_id: str) -> User | None:
        """A directory user of the organization not yet linked to a sign-in: by (vouched-for) email,
        then by ``externalId`` equal to the IdP's subject."""
        base = select(UserRow).where(UserRow.organization_id == organization_id, UserRow.directory_id.is_not(None),
                                     UserRow.subject.is_(None))
        if email:
            row = self.session.scalar(base.where(UserRow.email == email.lower()).order_by(UserRow.created_at).limit(1))
            if row is not None:
                return self._entity(row)
        row = self.session.scalar(base.where(UserRow.external_id == external_id).order_by(UserRow.created_at).limit(1))
        return self._entity(row) if row else None

    def directory_group_names(self, user_id: str) -> list[str] | None:
        """The display names of the user's directory groups; None if no directory provisioned the user."""
        if self.session.scalar(select(UserRow.directory_id).where(UserRow.id == user_id)) is None:
            return None
        return list(self.session.scalars(
            select(DirectoryGroupRow.display_name)
            .join(DirectoryMembershipRow, DirectoryMembershipRow.group_id == DirectoryGroupRow.id)
            .where(DirectoryMembershipRow.user_id == user_id)))
