"""``/v1/organizations/{org}/domains``: claimed email domains and their DNS proof."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import DomainCreate, DomainOut, ListOut, domain_out
from keyhall.api.responses import json_response
from keyhall.core import domain_service

router = APIRouter(prefix="/v1/organizations/{org}/domains", tags=["domains"])

Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("", status_code=201, response_model=DomainOut)
def claim_domain(org: str, body: DomainCreate, uow: UowDep, ctx: ContextDep) -> Response:
    """Claim an email domain. The answer's ``verification`` names the TXT record to publish
    (``_keyhall-challenge.<domain>`` = ``keyhall-verification=<token>``). Public email domains
    (gmail.com and the like) are refused (400); a domain another organization has verified is 409."""
    return json_response(DomainOut, domain_out(domain_service.claim_domain(uow, ctx, org, body.domain)),
                         status_code=201)


@router.get("", response_model=ListOut[DomainOut])
async def list_domains(
    org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, limit: Limit = 50, cursor: str | None = None
) -> dict[str, Any]:
    page = await run_reads(runtime, uow, lambda: domain_service.list_domains(uow, ctx, org, limit=limit,
                                                                            cursor=cursor))
    return {"data": [domain_out(d) for d in page.items], "next_cursor": page.next_cursor}


@router.get("/{domain_id}", response_model=DomainOut)
async def get_domain(org: str, domain_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    return domain_out(await run_reads(runtime, uow, lambda: domain_service.get_domain(uow, ctx, org, domain_id)))


@router.delete("/{domain_id}", status_code=204)
def delete_domain(org: str, domain_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    domain_service.delete_domain(uow, ctx, org, domain_id)
    return Response(status_code=204)


@router.post("/{domain_id}/verify", response_model=DomainOut)
def verify_domain(org: str, domain_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    """Look the TXT record up now (through ``KEYHALL_DNS_RESOLVER`` when set) and answer the
    domain's new state: ``status`` (pending, verified, failed), ``last_checked_at``,
    ``last_error`` (why it is not verified, or why a verified domain is at risk) and
    ``verified_at`` (when the proof was last seen). A domain verified by another organization is
    409. Keyhall also re-checks domains in the background; keep the record published: a verified
    domain whose record stays missing for 7 days is un-verified."""
    return json_response(DomainOut, domain_out(domain_service.verify_domain(uow, ctx, org, domain_id,
                                                                            runtime.txt_lookup())))
