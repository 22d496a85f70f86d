"""``/v1/organizations`` and ``/v1/organizations/{org}/keys``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import (
    IssuedKeyOut,
    KeyCreate,
    KeyOut,
    ListOut,
    OrganizationCreate,
    OrganizationOut,
    OrganizationUpdate,
    key_out,
    organization_out,
)
from keyhall.api.responses import json_response
from keyhall.core import org_service
from keyhall.core.org_service import OrganizationChanges

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])

Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("", status_code=201, response_model=OrganizationOut)
def create_organization(body: OrganizationCreate, uow: UowDep, ctx: ContextDep) -> Response:
    return json_response(OrganizationOut, organization_out(org_service.create_organization(uow, ctx, body.name,
                                                                                           body.slug)), status_code=201)


@router.get("", response_model=ListOut[OrganizationOut])
async def list_organizations(uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, limit: Limit = 50,
                             cursor: str | None = None) -> dict[str, Any]:
    page = await run_reads(runtime, uow, lambda: org_service.list_organizations(uow, ctx, limit=limit, cursor=cursor))
    return {"data": [organization_out(o) for o in page.items], "next_cursor": page.next_cursor}


@router.get("/{org}", response_model=OrganizationOut)
async def get_organization(org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    return organization_out(await run_reads(runtime, uow, lambda: org_service.get_organization(uow, ctx, org)))


@router.patch("/{org}", response_model=OrganizationOut)
def update_organization(org: str, body: OrganizationUpdate, uow: UowDep, ctx: ContextDep) -> Response:
    changes = OrganizationChanges(
        name=body.name, admins_may_configure_sso=body.admins_may_configure_sso,
        break_glass_email=str(body.break_glass_email) if body.break_glass_email else None,
        clear_break_glass="break_glass_email" in body.model_fields_set and body.break_glass_email is None,
        default_connection_id=body.default_connection_id,
        clear_default_connection=(
            "default_connection_id" in body.model_fields_set and body.default_connection_id is None
        ),
    )
    return json_response(OrganizationOut, organization_out(org_service.update_organization(uow, ctx, org, changes)))


@router.delete("/{org}", status_code=204)
def delete_organization(org: str, uow: UowDep, ctx: ContextDep) -> Response:
    org_service.delete_organization(uow, ctx, org)
    return Response(status_code=204)


@router.post("/{org}/keys", status_code=201, response_model=IssuedKeyOut)
def create_key(org: str, body: KeyCreate, uow: UowDep, ctx: ContextDep) -> Response:
    key, issued = org_service.create_key(uow, ctx, org, body.role, body.name)
    return json_response(IssuedKeyOut, {**key_out(key), "secret": issued.secret, "token": issued.token},
                         status_code=201)


@router.get("/{org}/keys", response_model=ListOut[KeyOut])
async def list_keys(org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, limit: Limit = 50,
                    cursor: str | None = None) -> dict[str, Any]:
    page = await run_reads(runtime, uow, lambda: org_service.list_keys(uow, ctx, org, limit=limit, cursor=cursor))
    return {"data": [key_out(k) for k in page.items], "next_cursor": page.next_cursor}


@router.delete("/{org}/keys/{key_id}", response_model=KeyOut)
def revoke_key(org: str, key_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    return json_response(KeyOut, key_out(org_service.revoke_key(uow, ctx, org, key_id)))
