"""When each SAML connection's certificates are next looked at, claimed by a conditional UPDATE."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.certificates import CertificateWatch
from keyhall.core.vocabulary import Protocol
from keyhall.storage.models import CertificateWatchRow, ConnectionRow


class SqlCertificateWatch:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: CertificateWatchRow) -> CertificateWatch:
        return CertificateWatch(connection_id=row.connection_id, due_at=row.due_at, etag=row.etag,
                                last_modified=row.last_modified, missing_since=dict(row.missing_since or {}),
                                fired={k: list(v) for k, v in (row.fired or {}).items()}, last_error=row.last_error)

    def due(self, now: datetime, *, limit: int) -> list[str]:
        query = (select(ConnectionRow.id)
                 .outerjoin(CertificateWatchRow, CertificateWatchRow.connection_id == ConnectionRow.id)
                 .where(ConnectionRow.protocol == str(Protocol.SAML),
                        or_(CertificateWatchRow.connection_id.is_(None), CertificateWatchRow.due_at <= now))
                 .order_by(CertificateWatchRow.due_at.is_not(None), CertificateWatchRow.due_at, ConnectionRow.id)
                 .limit(limit))
        return list(self.session.scalars(query))

    def claim(self, connection_id: str, now: datetime, next_due: datetime) -> CertificateWatch | None:
        row = self.session.get(CertificateWatchRow, connection_id)
        if row is None:
            try:
                with self.session.begin_nested():
                    row = CertificateWatchRow(connection_id=connection_id, due_at=next_due, missing_since={},
                                              fired={})
                    self.session.add(row)
            except IntegrityError:  # another instance created it first: it holds this turn
                return None
            return self._entity(row)
        result = self.session.execute(
            update(CertificateWatchRow)
            .where(CertificateWatchRow.connection_id == connection_id, CertificateWatchRow.due_at <= now)
            .values(due_at=next_due)
            .execution_options(synchronize_session=False))
        if getattr(result, "rowcount", 0) != 1:
            return None
        self.session.refresh(row)
        return self._entity(row)

    def save(self, watch: CertificateWatch) -> None:
        self.session.execute(
            update(CertificateWatchRow).where(CertificateWatchRow.connection_id == watch.connection_id)
            .values(etag=watch.etag, last_modified=watch.last_modified, missing_since=dict(watch.missing_since),
                    fired={k: list(v) for k, v in watch.fired.items()}, last_error=watch.last_error)
            .execution_options(synchronize_session=False))
