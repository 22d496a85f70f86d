"""Repositories for sign-in: users, applications, signing keys, login transactions and grants."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.applications import Application
from keyhall.core.ports import Page
from keyhall.core.transactions import LoginTransaction
from keyhall.core.users import User
from keyhall.provider.model import AuthorizationCode, RefreshToken, SigningKey, TokenFamily
from keyhall.security.secrets import SecretBox
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    ApplicationRow,
    AuthorizationCodeRow,
    LoginTransactionRow,
    RefreshTokenRow,
    RevokedAccessTokenRow,
    SamlReplayRow,
    SigningKeyRow,
    TokenFamilyRow,
    UserRow,
)
from keyhall.storage.repositories import _flush, _paginate

_USER_FIELDS = ("id", "organization_id", "connection_id", "subject", "email", "email_verified", "name",
                "given_name", "family_name", "username", "picture", "locale", "phone_number", "groups",
                "password_hash", "disabled", "created_at", "updated_at", "last_login_at", "version")


class SqlUsers:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: UserRow) -> User:
        values: dict[str, Any] = {name: getattr(row, name) for name in _USER_FIELDS}
        values["groups"] = list(values["groups"] or [])
        return User(**values)

    def get(self, user_id: str) -> User | None:
        row = self.session.get(UserRow, user_id)
        return self._entity(row) if row else None

    def by_subject(self, connection_id: str, subject: str) -> User | None:
        row = self.session.scalar(hot_queries.user_by_subject(connection_id, subject))
        return self._entity(row) if row else None

    def precreated(self, connection_id: str, email: str) -> User | None:
        row = self.session.scalar(select(UserRow).where(UserRow.connection_id == connection_id,
                                                        UserRow.subject.is_(None), UserRow.email == email.lower()))
        return self._entity(row) if row else None

    def local_by_email(self, organization_id: str, email: str) -> User | None:
        row = self.session.scalar(select(UserRow).where(UserRow.organization_id == organization_id,
                                                        UserRow.connection_id.is_(None),
                                                        UserRow.email == email.lower()))
        return self._entity(row) if row else None

    def local_accounts(self, email: str) -> list[User]:
        rows = self.session.scalars(select(UserRow).where(UserRow.connection_id.is_(None),
                                                          UserRow.email == email.lower()).limit(20))
        return [self._entity(r) for r in rows]

    def add(self, user: User) -> None:
        self.session.add(UserRow(**{name: getattr(user, name) for name in _USER_FIELDS}))
        _flush(self.session)

    def save(self, user: User) -> None:
        self._write(user, expected_version=None)

    def save_if_version(self, user: User, expected_version: int) -> bool:
        """Write the user if the stored version is still ``expected_version`` (If-Match)."""
        return self._write(user, expected_version=expected_version)

    def _write(self, user: User, *, expected_version: int | None) -> bool:
        values: dict[str, Any] = {name: getattr(user, name) for name in _USER_FIELDS if name not in ("id", "version")}
        query = update(UserRow).where(UserRow.id == user.id)
        if expected_version is not None:
            query = query.where(UserRow.version == expected_version)
        result = self.session.execute(query.values(**values, version=UserRow.version + 1))
        if getattr(result, "rowcount", 0) != 1:
            return False
        user.version = int(self.session.scalar(select(UserRow.version).where(UserRow.id == user.id)) or 0)
        return True

    def delete(self, user_id: str) -> None:
        self.session.execute(delete(UserRow).where(UserRow.id == user_id))

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None) -> Page[User]:
        query = select(UserRow).where(UserRow.organization_id == organization_id)
        return _paginate(self.session, query, UserRow.created_at, UserRow.id, limit=limit, cursor=cursor,
                         convert=self._entity)


class SqlApplications:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: ApplicationRow) -> Application:
        return Application(id=row.id, name=row.name, public=row.public, redirect_uris=list(row.redirect_uris),
                           allowed_scopes=list(row.allowed_scopes), id_token_alg=row.id_token_alg,  # type: ignore[arg-type]
                           secret_hash=row.secret_hash, created_at=row.created_at, updated_at=row.updated_at,
                           post_logout_redirect_uris=list(row.post_logout_redirect_uris or []),
                           backchannel_logout_uri=row.backchannel_logout_uri)

    def get(self, client_id: str) -> Application | None:
        row = self.session.get(ApplicationRow, client_id)
        return self._entity(row) if row else None

    def add(self, app: Application) -> None:
        self.session.add(ApplicationRow(**vars(app)))
        _flush(self.session)

    def save(self, app: Application) -> None:
        values = {k: v for k, v in vars(app).items() if k != "id"}
        self.session.execute(update(ApplicationRow).where(ApplicationRow.id == app.id).values(**values))

    def delete(self, client_id: str) -> None:
        row = self.session.get(ApplicationRow, client_id)
        if row is not None:
            self.session.delete(row)

    def list_all(self) -> list[Application]:
        rows = self.session.scalars(select(ApplicationRow).order_by(ApplicationRow.created_at, ApplicationRow.id))
        return [self._entity(r) for r in rows]


class SqlSigningKeys:
    def __init__(self, session: Session, box: SecretBox):
        self.session = session
        self.box = box

    def _entity(self, row: SigningKeyRow) -> SigningKey:
        return SigningKey(kid=row.kid, alg=row.alg, private_pem=self.box.open(row.sealed_private_key)["pem"],
                          public_jwk=dict(row.public_jwk), created_at=row.created_at, retired_at=row.retired_at,
                          published_until=row.published_until)

    def active(self, alg: str) -> SigningKey | None:
        row = self.session.scalar(select(SigningKeyRow).where(SigningKeyRow.alg == alg,
                                                              SigningKeyRow.retired_at.is_(None))
                                  .order_by(SigningKeyRow.created_at.desc()).limit(1))
        return self._entity(row) if row else None

    def published(self, now: datetime) -> list[SigningKey]:
        rows = self.session.scalars(select(SigningKeyRow).where(
            or_(SigningKeyRow.retired_at.is_(None), SigningKeyRow.published_until > now)
        ).order_by(SigningKeyRow.created_at))
        return [self._entity(r) for r in rows]

    def get(self, kid: str) -> SigningKey | None:
        row = self.session.get(SigningKeyRow, kid)
        return self._entity(row) if row else None

    def add(self, key: SigningKey) -> None:
        sealed = self.box.seal({"pem": key.private_pem})
        assert sealed is not None
        self.session.add(SigningKeyRow(kid=key.kid, alg=key.alg, sealed_private_key=sealed,
                                       public_jwk=key.public_jwk, created_at=key.created_at,
                                       retired_at=key.retired_at, published_until=key.published_until))
        _flush(self.session)

    def add_active(self, key: SigningKey) -> bool:
        """Add a new active key unless another instance just did (one active key per algorithm)."""
        sealed = self.box.seal({"pem": key.private_pem})
        assert sealed is not None
        try:
            with self.session.begin_nested():
                self.session.add(SigningKeyRow(kid=key.kid, alg=key.alg, sealed_private_key=sealed,
                                               public_jwk=key.public_jwk, created_at=key.created_at))
        except IntegrityError:
            return False
        return True

    def retire(self, kid: str, now: datetime, published_until: datetime) -> None:
        self.session.execute(update(SigningKeyRow).where(SigningKeyRow.kid == kid)
                             .values(retired_at=now, published_until=published_until))

    def all_sealed(self) -> list[tuple[str, str]]:
        return [(r.kid, r.sealed_private_key) for r in self.session.scalars(select(SigningKeyRow))]

    def replace_sealed(self, kid: str, blob: str) -> None:
        self.session.execute(update(SigningKeyRow).where(SigningKeyRow.kid == kid).values(sealed_private_key=blob))


_HANDLE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class SqlTransactions:
    """Transaction ids arrive from browsers (state, RelayState, cookies): anything that is not a
    handle Keyhall could have issued is answered as absent without reaching the database."""

    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: LoginTransactionRow) -> LoginTransaction:
        return LoginTransaction(id=row.id, kind=row.kind, data=dict(row.data), created_at=row.created_at,
                                expires_at=row.expires_at, parent_id=row.parent_id, consumed_at=row.consumed_at)

    def add(self, tx: LoginTransaction) -> None:
        self.session.add(LoginTransactionRow(**vars(tx)))
        _flush(self.session)

    def get(self, tx_id: str) -> LoginTransaction | None:
        if not _HANDLE.match(tx_id):
            return None
        row = self.session.get(LoginTransactionRow, tx_id)
        return self._entity(row) if row else None

    def consume(self, tx_id: str, kind: str, now: datetime) -> LoginTransaction | None:
        if not _HANDLE.match(tx_id):
            return None
        result = self.session.execute(
            update(LoginTransactionRow)
            .where(LoginTransactionRow.id == tx_id[:64], LoginTransactionRow.kind == kind,
                   LoginTransactionRow.consumed_at.is_(None), LoginTransactionRow.expires_at > now)
            .values(consumed_at=now)
        )
        if getattr(result, "rowcount", 0) != 1:
            return None
        return self.get(tx_id)

    def update_data(self, tx_id: str, data: dict[str, Any]) -> None:
        self.session.execute(update(LoginTransactionRow).where(LoginTransactionRow.id == tx_id).values(data=data))


class SqlGrants:
    def __init__(self, session: Session):
        self.session = session

    def add_code(self, code: AuthorizationCode) -> None:
        self.session.add(AuthorizationCodeRow(**vars(code)))
        _flush(self.session)

    def use_code(self, code_hash: str, now: datetime) -> tuple[AuthorizationCode | None, bool]:
        result = self.session.execute(
            update(AuthorizationCodeRow)
            .where(AuthorizationCodeRow.code_hash == code_hash, AuthorizationCodeRow.used_at.is_(None))
            .values(used_at=now)
        )
        row = self.session.get(AuthorizationCodeRow, code_hash, populate_existing=True)
        if row is None:
            return None, False
        code = AuthorizationCode(code_hash=row.code_hash, client_id=row.client_id, user_id=row.user_id,
                                 grant=dict(row.grant), created_at=row.created_at, expires_at=row.expires_at,
                                 used_at=row.used_at)
        return code, getattr(result, "rowcount", 0) == 1

    def note_code_family(self, code_hash: str, family_id: str) -> None:
        row = self.session.get(AuthorizationCodeRow, code_hash)
        if row is not None:
            row.grant = {**row.grant, "family_id": family_id}

    def add_refresh(self, token: RefreshToken) -> None:
        self.session.add(RefreshTokenRow(**vars(token)))
        _flush(self.session)

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
        self.session.add(TokenFamilyRow(**vars(family)))
        _flush(self.session)

    def family(self, family_id: str) -> TokenFamily | None:
        row = self.session.get(TokenFamilyRow, family_id[:36])
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
        return self.session.get(RevokedAccessTokenRow, jti[:64]) is not None


class SqlReplays:
    """The SAML replay cache: an assertion id is accepted once per connection."""

    def __init__(self, session: Session):
        self.session = session

    def remember(self, connection_id: str, assertion_id: str, expires_at: datetime, now: datetime) -> bool:
        """True the first time; False when the id was seen and has not expired."""
        self.session.execute(delete(SamlReplayRow).where(SamlReplayRow.expires_at < now))
        try:
            with self.session.begin_nested():
                self.session.add(SamlReplayRow(connection_id=connection_id, assertion_id=assertion_id[:256],
                                               expires_at=expires_at))
        except IntegrityError:
            return False
        return True
