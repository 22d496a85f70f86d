"""Reading sign-in traces (``core.sign_in_traces``) through the API: any role of the organization;
another organization's trace is absent (404)."""

from __future__ import annotations

from keyhall.core.connection_service import Context, organization_for
from keyhall.core.ports import Page, UnitOfWork
from keyhall.core.sign_in_traces import SignInTrace
from keyhall.errors import NotFound


def list_traces(uow: UnitOfWork, ctx: Context, org_ref: str, *, limit: int, cursor: str | None,
                connection_id: str | None = None, outcome: str | None = None) -> Page[SignInTrace]:
    org = organization_for(uow, ctx, org_ref)
    return uow.sign_in_traces.list_page(org.id, limit=limit, cursor=cursor, connection_id=connection_id,
                                        outcome=outcome)


def get_trace(uow: UnitOfWork, ctx: Context, org_ref: str, trace_id: str) -> SignInTrace:
    org = organization_for(uow, ctx, org_ref)
    trace = uow.sign_in_traces.get(org.id, trace_id)
    if trace is None:
        raise NotFound("sign-in trace not found", details={"id": trace_id})
    return trace
