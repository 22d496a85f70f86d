"""Sign-ins in progress (login transactions)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.core.transactions import LoginTransaction
from keyhall.errors import Conflict
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    LoginTransactionRow,
)
from keyhall.storage.repos._query import expire_loaded

_HANDLE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class SqlTransactions:
    """Transaction ids arrive from browsers (state, RelayState, cookies): anything that is not a
    handle Keyhall could have issued is answered as absent without reaching the database."""

    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: LoginTransactionRow | Row[Any]) -> LoginTransaction:
        return LoginTransaction(id=row.id, kind=row.kind, data=dict(row.data), created_at=row.created_at,
                                expires_at=row.expires_at, parent_id=row.parent_id, consumed_at=row.consumed_at)

    def add(self, tx: LoginTransaction) -> None:
        try:
            hot_queries.run(self.session, hot_queries.INSERT_LOGIN_TRANSACTION, **vars(tx))
        except IntegrityError as exc:
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc

    def get(self, tx_id: str) -> LoginTransaction | None:
        if not _HANDLE.match(tx_id):
            return None
        row = hot_queries.run(self.session, hot_queries.LOGIN_TRANSACTION_BY_ID, id=tx_id).first()
        return self._entity(row) if row else None

    def consume(self, tx_id: str, kind: str, now: datetime) -> LoginTransaction | None:
        if not _HANDLE.match(tx_id):
            return None
        # One prebuilt statement: the row comes back from the update itself (RETURNING).
        row = hot_queries.run(self.session, hot_queries.CONSUME_LOGIN_TRANSACTION, b_id=tx_id[:64], b_kind=kind,
                              b_now=now).first()
        if row is None:
            return None
        expire_loaded(self.session, LoginTransactionRow, row.id)  # the update went around the ORM
        return self._entity(row)

    def update_data(self, tx_id: str, data: dict[str, Any]) -> None:
        hot_queries.run(self.session, hot_queries.SET_LOGIN_TRANSACTION_DATA, b_id=tx_id, b_data=data)

