"""What the provider issued: authorization codes, token families, refresh tokens, revoked access tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.tokens import AuthorizationCode, RefreshToken, TokenFamily
from keyhall.errors import Conflict
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    RefreshTokenRow,
    RevokedAccessTokenRow,
    TokenFamilyRow,
)


class SqlGrants:
    def __init__(self, session: Session):
        self.session = session
        self._grants: dict[str, dict[str, Any]] = {}  # the grant of each code use_code returned

    def add_code(self, code: AuthorizationCode) -> None:
        try:
            hot_queries.run(self.session, hot_queries.INSERT_CODE, **vars(code))
        except IntegrityError as exc:
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc

    def use_code(self, code_hash: str, now: datetime) -> tuple[AuthorizationCode | None, bool]:
        row = hot_queries.run(self.session, hot_queries.USE_CODE, b_code_hash=code_hash, b_now=now).first()
        first_use = row is not None
        if row is None:  # unknown, or used before: read it as it is
            row = hot_queries.run(self.session, hot_queries.CODE_BY_HASH, b_code_hash=code_hash).first()
        if row is None:
            return None, False
        code = AuthorizationCode(code_hash=row.code_hash, client_id=row.client_id, user_id=row.user_id,
                                 grant=dict(row.grant), created_at=row.created_at, expires_at=row.expires_at,
                                 used_at=row.used_at)
        self._grants[code_hash] = dict(row.grant)
        return code, first_use

    def note_code_family(self, code_hash: str, family_id: str) -> None:
        grant = self._grants.get(code_hash)
        if grant is None:
            row = hot_queries.run(self.session, hot_queries.CODE_BY_HASH, b_code_hash=code_hash).first()
            if row is None:
                return
            grant = dict(row.grant)
        self._grants[code_hash] = {**grant, "family_id": family_id}
        hot_queries.run(self.session, hot_queries.SET_CODE_GRANT, b_code_hash=code_hash,
                        b_grant=self._grants[code_hash])

    def add_refresh(self, token: RefreshToken) -> None:
        try:
            hot_queries.run(self.session, hot_queries.INSERT_REFRESH_TOKEN, **vars(token))
        except IntegrityError as exc:
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc

    @staticmethod
    def _refresh(row: RefreshTokenRow) -> RefreshToken:
        return RefreshToken(token_hash=row.token_hash, family_id=row.family_id, client_id=row.client_id,
                            user_id=row.user_id, grant=dict(row.grant), created_at=row.created_at,
                            expires_at=row.expires_at, used_at=row.used_at, revoked_at=row.revoked_at)

    def use_refresh(self, token_hash: str, now: datetime) -> tuple[RefreshToken | None, bool]:
        result = self.session.execute(
            update(RefreshTokenRow)
            .where(and_(RefreshTokenRow.token_hash == token_hash, RefreshTokenRow.used_at.is_(None),
                        RefreshTokenRow.revoked_at.is_(None)))
            .values(used_at=now)
        )
        row = self.session.get(RefreshTokenRow, token_hash, populate_existing=True)
        if row is None:
            return None, False
        return self._refresh(row), getattr(result, "rowcount", 0) == 1

    def find_refresh(self, token_hash: str) -> RefreshToken | None:
        row = self.session.get(RefreshTokenRow, token_hash)
        return self._refresh(row) if row else None

    def add_family(self, family: TokenFamily) -> None:
        try:
            hot_queries.run(self.session, hot_queries.INSERT_TOKEN_FAMILY, **vars(family))
        except IntegrityError as exc:
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc

    def family(self, family_id: str) -> TokenFamily | None:
        row = hot_queries.run(self.session, hot_queries.TOKEN_FAMILY_BY_ID, id=family_id[:36]).first()
        if row is None:
            return None
        return TokenFamily(id=row.id, client_id=row.client_id, user_id=row.user_id, connection_id=row.connection_id,
                           amr=list(row.amr or []), created_at=row.created_at, revoked_at=row.revoked_at)

    def revoke_family(self, family_id: str, now: datetime) -> int:
        self.session.execute(update(TokenFamilyRow).where(TokenFamilyRow.id == family_id,
                                                          TokenFamilyRow.revoked_at.is_(None)).values(revoked_at=now))
        result = self.session.execute(
            update(RefreshTokenRow).where(RefreshTokenRow.family_id == family_id,
                                          RefreshTokenRow.revoked_at.is_(None)).values(revoked_at=now)
        )
        return int(getattr(result, "rowcount", 0))

    def revoke_user(self, user_id: str, now: datetime) -> int:
        result = self.session.execute(update(TokenFamilyRow).where(
            TokenFamilyRow.user_id == user_id, TokenFamilyRow.revoked_at.is_(None)).values(revoked_at=now))
        self.session.execute(update(RefreshTokenRow).where(
            RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked_at.is_(None)).values(revoked_at=now))
        return int(getattr(result, "rowcount", 0))

    def revoke_connection(self, connection_id: str, now: datetime) -> int:
        families = select(TokenFamilyRow.id).where(TokenFamilyRow.connection_id == connection_id,
                                                   TokenFamilyRow.revoked_at.is_(None))
        self.session.execute(update(RefreshTokenRow).where(
            RefreshTokenRow.family_id.in_(families.scalar_subquery()), RefreshTokenRow.revoked_at.is_(None),
        ).values(revoked_at=now))
        result = self.session.execute(update(TokenFamilyRow).where(
            TokenFamilyRow.connection_id == connection_id, TokenFamilyRow.revoked_at.is_(None)).values(revoked_at=now))
        return int(getattr(result, "rowcount", 0))

    def forget_user(self, user_id: str) -> None:
        self.session.execute(delete(RefreshTokenRow).where(RefreshTokenRow.user_id == user_id))
        self.session.execute(delete(TokenFamilyRow).where(TokenFamilyRow.user_id == user_id))

    def revoke_access_token(self, jti: str, family_id: str | None, expires_at: datetime) -> None:
        if self.session.get(RevokedAccessTokenRow, jti) is not None:
            return
        try:
            with self.session.begin_nested():  # two revocations of one token at once: either insert wins
                self.session.add(RevokedAccessTokenRow(jti=jti, family_id=family_id, expires_at=expires_at))
        except IntegrityError:
            pass

    def access_token_revoked(self, jti: str) -> bool:
        return hot_queries.run(self.session, hot_queries.ACCESS_TOKEN_REVOKED, jti=jti[:64]).first() is not None

