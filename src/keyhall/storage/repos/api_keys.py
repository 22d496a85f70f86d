"""The API keys table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from keyhall.core.api_keys import ApiKey
from keyhall.core.ports import Page
from keyhall.core.vocabulary import (
    Role,
)
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    ApiKeyRow,
)
from keyhall.storage.repos._query import paginate


class SqlApiKeys:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: ApiKeyRow | Row[Any]) -> ApiKey:
        return ApiKey(id=row.id, organization_id=row.organization_id, role=Role(row.role) if row.role else None,
                      secret_hash=row.secret_hash, name=row.name, created_at=row.created_at,
                      last_used_at=row.last_used_at, revoked_at=row.revoked_at)

    def get(self, key_id: str) -> ApiKey | None:
        row = hot_queries.run(self.session, hot_queries.API_KEY_BY_ID, id=key_id).first()
        return self._entity(row) if row else None

    def add(self, key: ApiKey) -> None:
        values = vars(key).copy()
        values["role"] = str(key.role) if key.role else None
        self.session.add(ApiKeyRow(**values))

    def save(self, key: ApiKey) -> None:
        self.session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key.id).values(
            name=key.name, last_used_at=key.last_used_at, revoked_at=key.revoked_at))

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None) -> Page[ApiKey]:
        query = select(ApiKeyRow).where(ApiKeyRow.organization_id == organization_id)
        return paginate(self.session, query, ApiKeyRow.created_at, ApiKeyRow.id, limit=limit, cursor=cursor,
                         convert=self._entity)

