"""Portal links and sessions (``keyhall.core.portal.PortalStore``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from keyhall.core.portal import Intent, PortalLink, PortalSession
from keyhall.storage.models.portal import PortalLinkRow, PortalSessionRow


def _link(row: PortalLinkRow) -> PortalLink:
    return PortalLink(id=row.id, organization_id=row.organization_id, intent=Intent(row.intent),
                      token_hash=row.token_hash, return_url=row.return_url, created_by=row.created_by,
                      created_at=row.created_at, expires_at=row.expires_at, used_at=row.used_at)


class SqlPortal:
    def __init__(self, session: Session):
        self.session = session

    def add_link(self, link: PortalLink) -> None:
        self.session.add(PortalLinkRow(
            id=link.id, organization_id=link.organization_id, intent=link.intent.value, token_hash=link.token_hash,
            return_url=link.return_url, created_by=link.created_by[:128], created_at=link.created_at,
            expires_at=link.expires_at, used_at=link.used_at,
        ))
        self.session.flush()

    def use_link(self, token_hash: str, now: datetime) -> tuple[PortalLink | None, str]:
        # One conditional UPDATE: of two browsers opening the same link at once, one wins.
        result = self.session.execute(
            update(PortalLinkRow)
            .where(PortalLinkRow.token_hash == token_hash, PortalLinkRow.used_at.is_(None),
                   PortalLinkRow.expires_at > now)
            .values(used_at=now)
        )
        row = self.session.scalars(select(PortalLinkRow).where(PortalLinkRow.token_hash == token_hash)).one_or_none()
        if row is None:
            return None, "unknown"
        if getattr(result, "rowcount", 0) == 1:
            return _link(row), "opened"
        return _link(row), "used" if row.used_at is not None else "expired"

    def add_session(self, session: PortalSession) -> None:
        self.session.add(PortalSessionRow(
            id=session.id, link_id=session.link_id, organization_id=session.organization_id,
            intent=session.intent.value, secret_hash=session.secret_hash, csrf_token=session.csrf_token,
            return_url=session.return_url, draft_connection_id=session.draft_connection_id,
            created_at=session.created_at, expires_at=session.expires_at,
        ))
        self.session.flush()

    def find_session(self, secret_hash: str) -> PortalSession | None:
        row = self.session.scalars(
            select(PortalSessionRow).where(PortalSessionRow.secret_hash == secret_hash)).one_or_none()
        if row is None:
            return None
        return PortalSession(
            id=row.id, link_id=row.link_id, organization_id=row.organization_id, intent=Intent(row.intent),
            secret_hash=row.secret_hash, csrf_token=row.csrf_token, return_url=row.return_url,
            draft_connection_id=row.draft_connection_id, created_at=row.created_at, expires_at=row.expires_at,
        )

    def set_draft_connection(self, session_id: str, connection_id: str) -> None:
        self.session.execute(update(PortalSessionRow).where(PortalSessionRow.id == session_id)
                             .values(draft_connection_id=connection_id))
