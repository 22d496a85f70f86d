"""Session ends in SQL (``core.sessions.SessionEndStore``): live token families, revoking them,
and the back-channel logout outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from keyhall.core.sessions import LiveSession, LogoutNotice
from keyhall.storage.models import LogoutNoticeRow, RefreshTokenRow, TokenFamilyRow

_FIELDS = ("attempts", "next_attempt_at", "delivered_at", "abandoned_at", "last_error")


class SqlSessionEnds:
    def __init__(self, session: Session):
        self.session = session

    def live(self, *, user_id: str | None = None, session_ids: Sequence[str] = ()) -> list[LiveSession]:
        if user_id is None and not session_ids:
            return []
        query = select(TokenFamilyRow.id, TokenFamilyRow.client_id, TokenFamilyRow.user_id).where(
            TokenFamilyRow.revoked_at.is_(None))
        if user_id is not None:
            query = query.where(TokenFamilyRow.user_id == user_id)
        if session_ids:
            query = query.where(TokenFamilyRow.id.in_([s[:36] for s in session_ids]))
        return [LiveSession(id=r.id, client_id=r.client_id, user_id=r.user_id)
                for r in self.session.execute(query.order_by(TokenFamilyRow.created_at, TokenFamilyRow.id))]

    def revoke(self, session_ids: Sequence[str], now: datetime) -> None:
        ids = list(session_ids)
        self.session.execute(update(TokenFamilyRow).where(TokenFamilyRow.id.in_(ids),
                                                          TokenFamilyRow.revoked_at.is_(None)).values(revoked_at=now))
        self.session.execute(update(RefreshTokenRow).where(RefreshTokenRow.family_id.in_(ids),
                                                           RefreshTokenRow.revoked_at.is_(None)).values(revoked_at=now))

    def queue(self, notices: Sequence[LogoutNotice]) -> None:
        self.session.add_all(LogoutNoticeRow(**vars(n)) for n in notices)
        self.session.flush()

    @staticmethod
    def _entity(row: LogoutNoticeRow) -> LogoutNotice:
        return LogoutNotice(id=row.id, session_id=row.session_id, client_id=row.client_id, user_id=row.user_id,
                            created_at=row.created_at, next_attempt_at=row.next_attempt_at, attempts=row.attempts,
                            delivered_at=row.delivered_at, abandoned_at=row.abandoned_at, last_error=row.last_error)

    def due(self, now: datetime, limit: int) -> list[LogoutNotice]:
        rows = self.session.scalars(
            select(LogoutNoticeRow)
            .where(LogoutNoticeRow.delivered_at.is_(None), LogoutNoticeRow.abandoned_at.is_(None),
                   LogoutNoticeRow.next_attempt_at <= now)
            .order_by(LogoutNoticeRow.next_attempt_at, LogoutNoticeRow.id).limit(limit))
        return [self._entity(r) for r in rows]

    def claim(self, notice_id: str, now: datetime, until: datetime) -> bool:
        result = self.session.execute(
            update(LogoutNoticeRow)
            .where(and_(LogoutNoticeRow.id == notice_id, LogoutNoticeRow.delivered_at.is_(None),
                        LogoutNoticeRow.abandoned_at.is_(None), LogoutNoticeRow.next_attempt_at <= now))
            .values(next_attempt_at=until))
        return int(getattr(result, "rowcount", 0)) == 1

    def record_attempt(self, notice: LogoutNotice) -> None:
        values = {name: getattr(notice, name) for name in _FIELDS}
        if values["last_error"] is not None:
            values["last_error"] = str(values["last_error"])[:512]
        self.session.execute(update(LogoutNoticeRow).where(LogoutNoticeRow.id == notice.id).values(**values))
