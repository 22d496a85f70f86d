"""Keyset pagination over (created_at, id): the cursors the lists answer, and reading them back."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from keyhall.core.ports import Page
from keyhall.errors import InvalidInput

R = TypeVar("R")
T = TypeVar("T")


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


_CURSOR_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) position a cursor from ``encode_cursor`` names; InvalidInput naming
    ``cursor`` for anything else (not base64, not text, no separator, a time without a zone or out
    of range, an id no row can have), so a forged cursor is a 400 on every list, never a 500."""
    problem = InvalidInput("cursor: is not a cursor this API returned", field="cursor")
    if len(cursor) > 512:
        raise problem
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None or moment.utcoffset() is None or not _CURSOR_ID.match(row_id):
            raise problem
        return moment.astimezone(UTC), row_id
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise problem from None


def paginate(
    session: Session, query: Select[R], created: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[str], *, limit: int, cursor: str | None, convert: Callable[[R], T],
) -> Page[T]:
    if cursor:
        stamp, row_id = decode_cursor(cursor)
        query = query.where(or_(created > stamp, and_(created == stamp, ident > row_id)))
    rows = list(session.scalars(query.order_by(created, ident).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last: Any = rows[-1]
        next_cursor = encode_cursor(last.created_at, last.id)
    return Page(items=[convert(r) for r in rows], next_cursor=next_cursor)
