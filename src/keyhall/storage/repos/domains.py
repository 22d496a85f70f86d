"""The organizations' domain claims."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, select, update
from sqlalchemy.orm import Session

from keyhall.core.domains import Domain
from keyhall.core.ports import Page
from keyhall.core.vocabulary import (
    DomainStatus,
)
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    DomainRow,
)
from keyhall.storage.repos._query import flush, paginate


class SqlDomains:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: DomainRow | Row[Any]) -> Domain:
        return Domain(id=row.id, organization_id=row.organization_id, name=row.name,
                      verification_token=row.verification_token, status=DomainStatus(row.status),
                      last_checked_at=row.last_checked_at, last_error=row.last_error,
                      verified_at=row.verified_at, created_at=row.created_at)

    def _values(self, domain: Domain) -> dict[str, Any]:
        values = vars(domain).copy()
        values["status"] = str(domain.status)
        return values

    def get(self, organization_id: str, domain_id: str) -> Domain | None:
        row = self.session.scalar(select(DomainRow).where(DomainRow.id == domain_id,
                                                          DomainRow.organization_id == organization_id))
        return self._entity(row) if row else None

    def find(self, organization_id: str, name: str) -> Domain | None:
        row = hot_queries.run(self.session, hot_queries.DOMAIN_CLAIM, organization_id=organization_id,
                              name=name).first()
        return self._entity(row) if row else None

    def verified_elsewhere(self, organization_id: str, name: str) -> bool:
        return hot_queries.run(self.session, hot_queries.DOMAIN_VERIFIED_ELSEWHERE, name=name,
                               status=str(DomainStatus.VERIFIED), organization_id=organization_id).first() is not None

    def add(self, domain: Domain) -> None:
        self.session.add(DomainRow(**self._values(domain)))
        flush(self.session)

    def save(self, domain: Domain) -> None:
        values = self._values(domain)
        values.pop("id")
        self.session.execute(update(DomainRow).where(DomainRow.id == domain.id).values(**values))

    def delete(self, domain_id: str) -> None:
        self.session.execute(delete(DomainRow).where(DomainRow.id == domain_id))

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None) -> Page[Domain]:
        query = select(DomainRow).where(DomainRow.organization_id == organization_id)
        return paginate(self.session, query, DomainRow.created_at, DomainRow.id, limit=limit, cursor=cursor,
                         convert=self._entity)

