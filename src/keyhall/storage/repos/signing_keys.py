"""The provider's signing keys (private keys sealed with the secret box)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.tokens import PublishedKey, SigningKey
from keyhall.security.secrets import SecretBox
from keyhall.storage import hot_queries
from keyhall.storage.cache import VersionedCache
from keyhall.storage.models import (
    SigningKeyRow,
)
from keyhall.storage.repos._query import flush


class SqlSigningKeys:
    """Which keys are active and published is read on every call; only a kid's decrypted private key
    is cached (``private_pems``): the key material under one kid never changes."""

    def __init__(self, session: Session, box: SecretBox, private_pems: VersionedCache[str, str] | None = None):
        self.session = session
        self.box = box
        self.private_pems: VersionedCache[str, str] = private_pems if private_pems is not None else VersionedCache(1)

    def _pem(self, row: SigningKeyRow | Row[Any]) -> str:
        pem = self.private_pems.get(row.kid, row.kid)
        if pem is None:
            pem = str(self.box.open(row.sealed_private_key)["pem"])
            self.private_pems.put(row.kid, row.kid, pem)
        return pem

    def _entity(self, row: SigningKeyRow | Row[Any]) -> SigningKey:
        return SigningKey(kid=row.kid, alg=row.alg, private_pem=self._pem(row),
                          public_jwk=dict(row.public_jwk), created_at=row.created_at, retired_at=row.retired_at,
                          published_until=row.published_until)

    def active(self, alg: str) -> SigningKey | None:
        row = hot_queries.run(self.session, hot_queries.ACTIVE_SIGNING_KEY, alg=alg).first()
        return self._entity(row) if row else None

    def active_of(self, algs: tuple[str, str]) -> dict[str, SigningKey]:
        found: dict[str, SigningKey] = {}
        for row in hot_queries.run(self.session, hot_queries.ACTIVE_SIGNING_KEYS, alg_a=algs[0], alg_b=algs[1]):
            if row.alg not in found:  # newest first: one active key per algorithm anyway
                found[row.alg] = self._entity(row)
        return found

    def published(self, now: datetime) -> list[PublishedKey]:
        return [PublishedKey(kid=row.kid, alg=row.alg, public_jwk=dict(row.public_jwk), active=row.retired_at is None)
                for row in hot_queries.run(self.session, hot_queries.PUBLISHED_SIGNING_KEYS, now=now)]

    def get(self, kid: str) -> SigningKey | None:
        row = self.session.get(SigningKeyRow, kid)
        return self._entity(row) if row else None

    def add(self, key: SigningKey) -> None:
        sealed = self.box.seal({"pem": key.private_pem})
        assert sealed is not None
        self.session.add(SigningKeyRow(kid=key.kid, alg=key.alg, sealed_private_key=sealed,
                                       public_jwk=key.public_jwk, created_at=key.created_at,
                                       retired_at=key.retired_at, published_until=key.published_until))
        flush(self.session)

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

