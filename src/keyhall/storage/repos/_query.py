"""What every repository shares: writing with a clear conflict, and keyset pagination."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.errors import Conflict
from keyhall.storage.pagination import paginate
from keyhall.storage.unit_sessions import CoreFirstSession

__all__ = ["dialect_name", "expire_loaded", "flush", "paginate"]


def flush(session: Session) -> None:
    """Send the pending writes now; a unique or foreign-key clash becomes ``Conflict``."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc


def expire_loaded(session: Session, model: type[Any], key: object) -> None:
    """After a prebuilt write of ``model``'s row ``key`` (around the ORM): the copy the ORM holds, if
    any, is stale, so expire it. A unit whose ORM session was never made holds none."""
    if isinstance(session, CoreFirstSession) and not session.orm_in_use:
        return
    loaded = session.identity_map.get(session.identity_key(model, key))
    if loaded is not None:
        session.expire(loaded)


def dialect_name(session: Session) -> str:
    """The database's dialect, without making a unit's ORM session to ask it."""
    if isinstance(session, CoreFirstSession):
        return session.dialect_name
    return session.get_bind().dialect.name
