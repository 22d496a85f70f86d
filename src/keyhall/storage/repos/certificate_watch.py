"""When each SAML connection's certificates are next looked at (claimed by a conditional UPDATE), and
the state of its SP key rollover (the next and previous private keys sealed like every secret)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.certificates import CertificateWatch, SpKeyRollover
from keyhall.core.vocabulary import Protocol
from keyhall.security.secrets import SecretBox
from keyhall.storage import hot_queries
from keyhall.storage.models import CertificateWatchRow, ConnectionRow
from keyhall.storage.repos._query import flush


class SqlCertificateWatch:
    def __init__(self, session: Session, box: SecretBox):
        self.session = session
        self.box = box

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

    # --- SP key rollover ---------------------------------------------------------------------------

    def sp_rollover(self, connection_id: str) -> SpKeyRollover | None:
        row = hot_queries.run(self.session, hot_queries.SP_ROLLOVER, connection_id=connection_id).first()
        if row is None or not row.sealed_sp_keys:
            return None
        keys = self.box.open(row.sealed_sp_keys)
        return SpKeyRollover(next_certificate=row.sp_next_certificate, next_private_key=keys.get("next"),
                             next_activates_at=row.sp_next_activates_at, previous_private_key=keys.get("previous"),
                             previous_until=row.sp_previous_until)

    def save_sp_rollover(self, connection_id: str, rollover: SpKeyRollover, *, now: datetime) -> None:
        row = self.session.get(CertificateWatchRow, connection_id)
        if row is None:
            row = CertificateWatchRow(connection_id=connection_id, due_at=now, missing_since={}, fired={})
            self.session.add(row)
        sealed = self.box.seal({"next": rollover.next_private_key or "",
                                "previous": rollover.previous_private_key or ""})
        row.sp_next_certificate = rollover.next_certificate if rollover.next_private_key else None
        row.sp_next_activates_at = rollover.next_activates_at if rollover.next_private_key else None
        row.sp_previous_until = rollover.previous_until if rollover.previous_private_key else None
        row.sealed_sp_keys = sealed
        if rollover.next_activates_at is not None and row.due_at > rollover.next_activates_at:
            row.due_at = rollover.next_activates_at  # looked at when the next key is to become active
        flush(self.session)

    def all_sealed_secrets(self) -> list[tuple[str, str]]:
        rows = self.session.execute(select(CertificateWatchRow.connection_id, CertificateWatchRow.sealed_sp_keys)
                                    .where(CertificateWatchRow.sealed_sp_keys.is_not(None)))
        return [(row_id, blob) for row_id, blob in rows if blob]

    def replace_sealed_secret(self, connection_id: str, blob: str) -> None:
        self.session.execute(update(CertificateWatchRow).where(CertificateWatchRow.connection_id == connection_id)
                             .values(sealed_sp_keys=blob))
