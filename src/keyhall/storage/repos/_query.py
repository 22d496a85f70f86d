"""What every repository shares: writing with a clear conflict, and keyset pagination."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhall.errors import Conflict
from keyhall.storage.pagination import paginate

__all__ = ["flush", "paginate"]


def flush(session: Session) -> None:
    """Send the pending writes now; a unique or foreign-key clash becomes ``Conflict``."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc
