"""The typed data of an authorize transaction (the browser's sign-in, ``kind == "authorize"``).

Stored as the transaction's ``data`` dict (``to_dict``; the keys are the stored format, unchanged:
``request``, ``csrf``, ``max_age``, ``pin``); read back with ``AuthorizeRecord.of(tx)``. Only
``keyhall.login`` reads or writes it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from keyhall.core.transactions import LoginTransaction
from keyhall.provider.authorize import AuthorizeRequest


@dataclass(frozen=True)
class AuthorizeRecord:
    """The product's request, the forms' CSRF token, the product's ``max_age``, and the pin: the
    connections the routing allowed, and the organizations whose local accounts may sign in with a
    password (None: any; empty: password sign-in is not allowed)."""

    request: AuthorizeRequest
    csrf: str
    max_age: int | None = None
    connections: tuple[str, ...] = ()
    password_organizations: tuple[str, ...] | None = ()

    @classmethod
    def new(cls, request: AuthorizeRequest, *, max_age: int | None) -> AuthorizeRecord:
        """Nothing pinned yet, but the connection the request names (an IdP-initiated SAML sign-in)."""
        return cls(request=request, csrf=secrets.token_urlsafe(24), max_age=max_age,
                   connections=(request.connection,) if request.connection else ())

    @classmethod
    def of(cls, tx: LoginTransaction) -> AuthorizeRecord:
        return cls.from_dict(tx.data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorizeRecord:
        pin = data.get("pin") or {}
        orgs = pin.get("password_organizations", [])
        max_age = data.get("max_age")
        return cls(request=AuthorizeRequest.from_dict(data["request"]), csrf=str(data.get("csrf", "")),
                   max_age=max_age if isinstance(max_age, int) and not isinstance(max_age, bool) else None,
                   connections=tuple(str(c) for c in pin.get("connections") or []),
                   password_organizations=None if orgs is None else tuple(str(o) for o in orgs))

    def to_dict(self) -> dict[str, Any]:
        orgs = self.password_organizations
        return {"request": self.request.as_dict(), "csrf": self.csrf, "max_age": self.max_age,
                "pin": {"connections": list(self.connections),
                        "password_organizations": None if orgs is None else list(orgs)}}

    def pinned(self, connections: list[str], password_organizations: list[str] | None) -> AuthorizeRecord:
        return replace(self, connections=tuple(connections),
                       password_organizations=None if password_organizations is None
                       else tuple(password_organizations))
