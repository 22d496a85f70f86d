"""The organizations table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, exists, select, update
from sqlalchemy.orm import Session

from keyhall.core.organizations import Organization, is_uuid
from keyhall.core.ports import Page
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    ApiKeyRow,
    ConnectionDomainRow,
    ConnectionRow,
    DomainRow,
    OrganizationRow,
)
from keyhall.storage.repos._query import paginate


class SqlOrganizations:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: OrganizationRow | Row[Any]) -> Organization:
        return Organization(id=row.id, slug=row.slug, name=row.name,
                            admins_may_configure_sso=row.admins_may_configure_sso,
                            break_glass_email=row.break_glass_email, short_id=row.short_id,
                            default_connection_id=row.default_connection_id, created_at=row.created_at,
                            updated_at=row.updated_at)

    def get(self, id_or_slug: str) -> Organization | None:
        by_id = is_uuid(id_or_slug)
        statement = hot_queries.ORGANIZATION_BY_ID if by_id else hot_queries.ORGANIZATION_BY_SLUG
        row = hot_queries.run(self.session, statement, value=id_or_slug.lower() if by_id else id_or_slug).first()
        return self._entity(row) if row else None

    def slug_taken(self, slug: str) -> bool:
        return bool(self.session.scalar(select(exists().where(OrganizationRow.slug == slug))))

    def add(self, organization: Organization) -> None:
        self.session.add(OrganizationRow(**vars(organization)))

    def save(self, organization: Organization) -> None:
        self.session.execute(update(OrganizationRow).where(OrganizationRow.id == organization.id)
                             .values(**{k: v for k, v in vars(organization).items() if k != "id"}))

    def delete(self, organization_id: str) -> None:
        for table in (ConnectionDomainRow, ConnectionRow, DomainRow, ApiKeyRow):
            self.session.execute(delete(table).where(table.organization_id == organization_id))
        self.session.execute(delete(OrganizationRow).where(OrganizationRow.id == organization_id))

    def list_page(self, *, limit: int, cursor: str | None) -> Page[Organization]:
        return paginate(self.session, select(OrganizationRow), OrganizationRow.created_at, OrganizationRow.id,
                         limit=limit, cursor=cursor, convert=self._entity)

