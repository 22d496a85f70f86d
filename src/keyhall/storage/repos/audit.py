"""The audit trail."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyhall.core.audit import AuditEvent
from keyhall.core.ports import Page
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    AuditEventRow,
)
from keyhall.storage.repos._query import paginate

#: The table itself, for plain INSERTs that skip the ORM's flush.


class SqlAudit:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: AuditEventRow) -> AuditEvent:
        return AuditEvent(id=row.id, organization_id=row.organization_id, actor=row.actor, action=row.action,
                          target_type=row.target_type, target_id=row.target_id, request_id=row.request_id,
                          changes=dict(row.changes), created_at=row.created_at)

    def add(self, event: AuditEvent) -> None:
        hot_queries.run(self.session, hot_queries.INSERT_AUDIT_EVENT, **vars(event))

    def list_page(self, organization_id: str | None, *, limit: int, cursor: str | None,
             action: str | None = None, target_id: str | None = None) -> Page[AuditEvent]:
        query = select(AuditEventRow).where(AuditEventRow.organization_id == organization_id)
        if action:
            query = query.where(AuditEventRow.action == action)
        if target_id:
            query = query.where(AuditEventRow.target_id == target_id)
        return paginate(self.session, query, AuditEventRow.created_at, AuditEventRow.id, limit=limit,
                         cursor=cursor, convert=self._entity)

