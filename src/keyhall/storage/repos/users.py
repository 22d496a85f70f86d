"""The users table: local accounts, pre-created and provisioned SSO users."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import Row, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.organizations import Organization
from keyhall.core.ports import Page
from keyhall.core.users import User
from keyhall.errors import Conflict
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    UserRow,
)
from keyhall.storage.repos._query import expire_loaded, paginate

_USER_FIELDS = ("id", "organization_id", "connection_id", "subject", "email", "email_verified", "name",
                "given_name", "family_name", "username", "picture", "locale", "phone_number", "groups",
                "password_hash", "disabled", "created_at", "updated_at", "last_login_at", "version", "directory_id")


class SqlUsers:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: UserRow | Row[Any]) -> User:
        values: dict[str, Any] = {name: getattr(row, name) for name in _USER_FIELDS}
        values["groups"] = list(values["groups"] or [])
        return User(**values)

    def get(self, user_id: str) -> User | None:
        row = hot_queries.run(self.session, hot_queries.USER_BY_ID, id=user_id).first()
        return self._entity(row) if row else None

    def with_organization(self, user_id: str) -> tuple[User, Organization] | None:
        row = hot_queries.run(self.session, hot_queries.USER_WITH_ORGANIZATION, id=user_id).first()
        if row is None:
            return None
        organization = Organization(**{f.name: row._mapping[hot_queries.ORGANIZATION_LABELS[f.name]]
                                       for f in fields(Organization)})
        return self._entity(row), organization

    def by_subject(self, connection_id: str, subject: str) -> User | None:
        row = hot_queries.run(self.session, hot_queries.USER_BY_SUBJECT, connection_id=connection_id,
                              subject=subject).first()
        return self._entity(row) if row else None

    def precreated(self, connection_id: str, email: str) -> User | None:
        row = self.session.scalar(select(UserRow).where(UserRow.connection_id == connection_id,
                                                        UserRow.subject.is_(None), UserRow.email == email.lower()))
        return self._entity(row) if row else None

    def local_by_email(self, organization_id: str, email: str) -> User | None:
        row = self.session.scalar(select(UserRow).where(UserRow.organization_id == organization_id,
                                                        UserRow.connection_id.is_(None),
                                                        UserRow.email == email.lower()))
        return self._entity(row) if row else None

    def local_accounts(self, email: str) -> list[User]:
        rows = self.session.scalars(select(UserRow).where(UserRow.connection_id.is_(None),
                                                          UserRow.email == email.lower()).limit(20))
        return [self._entity(r) for r in rows]

    def add(self, user: User) -> None:
        try:
            values = {name: getattr(user, name) for name in _USER_FIELDS}
            hot_queries.run(self.session, hot_queries.INSERT_USER, **values)
        except IntegrityError as exc:
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc

    def save(self, user: User) -> None:
        self._write(user, expected_version=None)

    def save_if_version(self, user: User, expected_version: int) -> bool:
        """Write the user if the stored version is still ``expected_version`` (If-Match)."""
        return self._write(user, expected_version=expected_version)

    def _write(self, user: User, *, expected_version: int | None) -> bool:
        values: dict[str, Any] = {name: getattr(user, name) for name in hot_queries.USER_WRITTEN}
        # One prebuilt statement: the update says the version it wrote (RETURNING), no read after it.
        if expected_version is None:
            result = hot_queries.run(self.session, hot_queries.UPDATE_USER, b_id=user.id, **values)
        else:
            result = hot_queries.run(self.session, hot_queries.UPDATE_USER_AT_VERSION, b_id=user.id,
                                     b_version=expected_version, **values)
        version = result.scalar()
        if version is None:
            return False
        expire_loaded(self.session, UserRow, user.id)  # the update went around the ORM
        user.version = int(version)
        return True

    def delete(self, user_id: str) -> None:
        self.session.execute(delete(UserRow).where(UserRow.id == user_id))

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None) -> Page[User]:
        query = select(UserRow).where(UserRow.organization_id == organization_id)
        return paginate(self.session, query, UserRow.created_at, UserRow.id, limit=limit, cursor=cursor,
                         convert=self._entity)

