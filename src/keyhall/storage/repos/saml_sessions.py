"""The NameID and SessionIndex of sessions begun by a SAML sign-in (``core.ports.SamlSessionStore``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyhall.core.tokens import LiveSession, SamlSubject
from keyhall.storage import hot_queries
from keyhall.storage.models import SamlSessionRow, TokenFamilyRow


class SqlSamlSessions:
    def __init__(self, session: Session):
        self.session = session

    def add(self, session_id: str, subject: SamlSubject, now: datetime) -> None:
        hot_queries.run(self.session, hot_queries.INSERT_SAML_SESSION, session_id=session_id,
                        connection_id=subject.connection_id, name_id=subject.name_id[:512],
                        name_id_format=(subject.name_id_format or None) and subject.name_id_format[:256],
                        session_index=(subject.session_index or None) and subject.session_index[:256],
                        created_at=now)

    def subject(self, session_id: str) -> SamlSubject | None:
        row = self.session.get(SamlSessionRow, session_id[:36])
        if row is None:
            return None
        return SamlSubject(connection_id=row.connection_id, name_id=row.name_id, name_id_format=row.name_id_format,
                           session_index=row.session_index)

    def live(self, connection_id: str, name_id: str, session_indexes: Sequence[str] = ()) -> list[LiveSession]:
        query = (select(TokenFamilyRow.id, TokenFamilyRow.client_id, TokenFamilyRow.user_id)
                 .join(SamlSessionRow, SamlSessionRow.session_id == TokenFamilyRow.id)
                 .where(SamlSessionRow.connection_id == connection_id, SamlSessionRow.name_id == name_id[:512],
                        TokenFamilyRow.revoked_at.is_(None)))
        if session_indexes:
            query = query.where(SamlSessionRow.session_index.in_([i[:256] for i in session_indexes]))
        return [LiveSession(id=r.id, client_id=r.client_id, user_id=r.user_id)
                for r in self.session.execute(query.order_by(TokenFamilyRow.created_at, TokenFamilyRow.id))]
