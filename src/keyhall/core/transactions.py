"""Login transactions: the state of a sign-in in progress, stored so that any instance can
finish it. Each is single-use and short-lived; its id is an unguessable handle.

This is the stored envelope: a ``kind`` and a JSON ``data`` dict. What each kind holds is a typed
record of ``keyhall.login.records``, the only code that reads or writes ``data``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

LOGIN_TTL = timedelta(minutes=15)


@dataclass
class LoginTransaction:
    id: str
    kind: str  # login.records.Kind: "authorize" (the product's request), "oidc"/"saml" (a trip to an IdP), ...
    data: dict[str, Any]  # the record's stored form (login.records)
    created_at: datetime
    expires_at: datetime
    parent_id: str | None = None
    consumed_at: datetime | None = field(default=None)

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def new_transaction(kind: str, data: dict[str, Any], now: datetime, *, parent_id: str | None = None,
                    ttl: timedelta = LOGIN_TTL) -> LoginTransaction:
    return LoginTransaction(id=secrets.token_urlsafe(32), kind=kind, data=data, created_at=now,
                            expires_at=now + ttl, parent_id=parent_id)
