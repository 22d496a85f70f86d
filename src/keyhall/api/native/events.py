"""``/v1/events``: the event log, oldest first, for instance admins (replay with ``after``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.core import events as service
from keyhall.core.events import Event

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventOut(BaseModel):
    id: str
    sequence: int
    type: str
    created_at: str
    organization_id: str | None
    data: dict[str, Any]


class EventListOut(BaseModel):
    data: list[EventOut]
    next_cursor: str | None
    has_more: bool


def event_out(event: Event) -> dict[str, Any]:
    return {**event.payload(), "sequence": event.sequence}


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@router.get("", response_model=EventListOut)
async def list_events(
    uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 50,
    after: Annotated[str | None, Query(max_length=32, description="the sequence of the last event seen")] = None,
    cursor: Annotated[str | None, Query(max_length=32, description="the same as `after`")] = None,
    types: Annotated[list[str] | None, Query(max_length=50, description="event types or `prefix.*`, "
                                                                         "comma-separated or repeated")] = None,
) -> dict[str, Any]:
    """Events with a sequence above ``after``, in commit order. ``next_cursor`` is the ``after`` to
    ask with next (also when the page is not full: poll with it to see what comes later)."""
    position = after if after not in (None, "") else cursor
    found = await run_reads(runtime, uow, lambda: service.list_events(
        uow.events, ctx.principal, after=position, types=_split(types or []), limit=limit + 1))
    page, more = found[:limit], len(found) > limit
    next_cursor = str(page[-1].sequence) if page else (position or None)
    return {"data": [event_out(e) for e in page], "next_cursor": next_cursor, "has_more": more}
