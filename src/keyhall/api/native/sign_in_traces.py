"""``/v1/organizations/{org}/sign-in-traces[/{id}]`` (any role) and
``POST /v1/organizations/{org}/connections/{id}/test-sign-in`` (owner): test sign-ins and the traces
of sign-ins, redacted, for the organization's administrators and support."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import ListOut, iso
from keyhall.api.responses import json_response
from keyhall.core import sign_in_trace_service as service
from keyhall.core.sign_in_traces import SignInTrace
from keyhall.login import sign_in_test

router = APIRouter(prefix="/v1/organizations/{org}", tags=["sign-in traces"])


class TraceStepOut(BaseModel):
    name: str
    outcome: Literal["passed", "failed", "skipped"]
    detail: str


class TraceAttributeOut(BaseModel):
    name: str
    values: list[str]
    mapped_to: list[str]


class SignInTraceOut(BaseModel):
    id: str
    organization_id: str
    connection_id: str
    protocol: str
    kind: Literal["test", "sign_in"]
    outcome: Literal["passed", "failed"]
    steps: list[TraceStepOut]
    attributes: list[TraceAttributeOut]
    profile: dict[str, Any]
    failure: dict[str, str] | None
    started_by: str | None
    user_id: str | None
    created_at: str | None


class SignInTestOut(BaseModel):
    url: str
    expires_at: str | None


def trace_out(trace: SignInTrace) -> dict[str, Any]:
    return {"id": trace.id, "organization_id": trace.organization_id, "connection_id": trace.connection_id,
            "protocol": trace.protocol, "kind": trace.kind.value, "outcome": trace.outcome.value,
            "steps": [{**asdict(s), "outcome": s.outcome.value} for s in trace.steps],
            "attributes": [asdict(a) for a in trace.attributes], "profile": trace.profile, "failure": trace.failure,
            "started_by": trace.started_by, "user_id": trace.user_id, "created_at": iso(trace.created_at)}


@router.get("/sign-in-traces", response_model=ListOut[SignInTraceOut])
async def list_sign_in_traces(
    org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None, connection_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Literal["passed", "failed"] | None = None,
) -> dict[str, Any]:
    page = await run_reads(runtime, uow, lambda: service.list_traces(
        uow, ctx, org, limit=limit, cursor=cursor, connection_id=connection_id, outcome=outcome))
    return {"data": [trace_out(t) for t in page.items], "next_cursor": page.next_cursor}


@router.get("/sign-in-traces/{trace_id}", response_model=SignInTraceOut)
async def get_sign_in_trace(org: str, trace_id: str, uow: UowDep, ctx: ContextDep,
                            runtime: RuntimeDep) -> dict[str, Any]:
    return trace_out(await run_reads(runtime, uow, lambda: service.get_trace(uow, ctx, org, trace_id)))


@router.post("/connections/{connection_id}/test-sign-in", status_code=201, response_model=SignInTestOut)
def start_test_sign_in(org: str, connection_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    link = sign_in_test.begin_as(uow, runtime, ctx, org, connection_id)
    return json_response(SignInTestOut, {"url": link.url, "expires_at": iso(link.expires_at)}, status_code=201)
