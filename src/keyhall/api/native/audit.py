"""``/v1/organizations/{org}/audit-events``: the organization's audit trail, newest last."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import AuditEventOut, ListOut, audit_out
from keyhall.core import org_service

router = APIRouter(prefix="/v1/organizations/{org}/audit-events", tags=["audit"])


@router.get("", response_model=ListOut[AuditEventOut])
async def list_audit_events(
    org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None, action: str | None = None, target_id: str | None = None,
) -> dict[str, Any]:
    page = await run_reads(runtime, uow, lambda: org_service.list_audit_events(
        uow, ctx, org, limit=limit, cursor=cursor, action=action, target_id=target_id))
    return {"data": [audit_out(e) for e in page.items], "next_cursor": page.next_cursor}
