"""``/v1/organizations/{org}/audit-events``: the organization's audit trail, newest last."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from keyhall.api.deps import ContextDep, UowDep
from keyhall.api.native.schemas import AuditEventOut, ListOut, audit_out
from keyhall.core.access import require_member

router = APIRouter(prefix="/v1/organizations/{org}/audit-events", tags=["audit"])


@router.get("", response_model=ListOut[AuditEventOut])
def list_audit_events(
    org: str, uow: UowDep, ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None, action: str | None = None, target_id: str | None = None,
) -> dict[str, Any]:
    organization = require_member(ctx.principal, uow.organizations.get(org))
    page = uow.audit.list_page(organization.id, limit=limit, cursor=cursor, action=action, target_id=target_id)
    return {"data": [audit_out(e) for e in page.items], "next_cursor": page.next_cursor}
