"""``/v1/organizations/{org}/directories``: SCIM directories of an organization. ``POST`` and
``POST .../{id}/token`` answer the bearer ``token`` once, with the ``scim_base_url`` the IdP is
given; ``.../users`` and ``.../groups`` list what the directory synced."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import iso
from keyhall.core import directory_service
from keyhall.core.directories import Counts, Directory, DirectoryGroup, DirectoryUser

router = APIRouter(prefix="/v1/organizations/{org}/directories", tags=["directories"])


class DirectoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=128)
    provider: str = Field(default="generic", max_length=16)


class DirectoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=128)


def scim_base_url(public_url: str, directory: Directory) -> str:
    return f"{public_url.rstrip('/')}/scim/v2/{directory.id}"


def directory_out(public_url: str, directory: Directory, counts: Counts, token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": directory.id, "organization_id": directory.organization_id, "name": directory.name,
        "provider": directory.provider.value, "scim_base_url": scim_base_url(public_url, directory),
        "token_hint": f"…{directory.token_hint}", "token_rotated_at": iso(directory.token_rotated_at),
        "user_count": counts.users, "group_count": counts.groups, "last_sync_at": iso(directory.last_sync_at),
        "version": directory.version, "created_at": iso(directory.created_at), "updated_at": iso(directory.updated_at),
    }
    if token is not None:
        out["token"] = token
    return out


def directory_user_out(user: DirectoryUser) -> dict[str, Any]:
    return {"id": user.id, "user_name": user.user_name, "external_id": user.external_id, "email": user.email,
            "name": user.name, "given_name": user.given_name, "family_name": user.family_name,
            "active": user.active, "created_at": iso(user.created_at), "updated_at": iso(user.updated_at)}


def directory_group_out(group: DirectoryGroup) -> dict[str, Any]:
    return {"id": group.id, "display_name": group.display_name, "external_id": group.external_id,
            "created_at": iso(group.created_at), "updated_at": iso(group.updated_at)}


Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("", status_code=201)
def create_directory(org: str, body: DirectoryCreate, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                     response: Response) -> dict[str, Any]:
    made = directory_service.create_directory(uow, ctx, org, name=body.name, provider=body.provider)
    response.headers["Location"] = f"/v1/organizations/{org}/directories/{made.directory.id}"
    response.headers["Cache-Control"] = "no-store"
    return directory_out(runtime.settings.public_url, made.directory, Counts(0, 0), made.token)


@router.get("")
async def list_directories(org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    found, counts = await run_reads(runtime, uow, lambda: directory_service.list_directories(uow, ctx, org))
    return {"data": [directory_out(runtime.settings.public_url, d, counts[d.id]) for d in found],
            "next_cursor": None}


@router.get("/{directory_id}")
async def get_directory(org: str, directory_id: str, uow: UowDep, ctx: ContextDep,
                        runtime: RuntimeDep) -> dict[str, Any]:
    directory, counts = await run_reads(runtime, uow, lambda: directory_service.get_directory(uow, ctx, org,
                                                                                             directory_id))
    return directory_out(runtime.settings.public_url, directory, counts)


@router.patch("/{directory_id}")
def update_directory(org: str, directory_id: str, body: DirectoryUpdate, uow: UowDep, ctx: ContextDep,
                     runtime: RuntimeDep) -> dict[str, Any]:
    directory_service.rename_directory(uow, ctx, org, directory_id, name=body.name)
    directory, counts = directory_service.get_directory(uow, ctx, org, directory_id)
    return directory_out(runtime.settings.public_url, directory, counts)


@router.post("/{directory_id}/token")
def rotate_token(org: str, directory_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                 response: Response) -> dict[str, Any]:
    made = directory_service.rotate_token(uow, ctx, org, directory_id)
    _, counts = directory_service.get_directory(uow, ctx, org, directory_id)
    response.headers["Cache-Control"] = "no-store"
    return directory_out(runtime.settings.public_url, made.directory, counts, made.token)


@router.delete("/{directory_id}", status_code=204)
def delete_directory(org: str, directory_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    directory_service.delete_directory(uow, ctx, org, directory_id)
    return Response(status_code=204)


@router.get("/{directory_id}/users")
async def list_users(org: str, directory_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                     limit: Limit = 50, cursor: str | None = None) -> dict[str, Any]:
    found, after = await run_reads(runtime, uow, lambda: directory_service.list_directory_users(
        uow, ctx, org, directory_id, limit=limit, cursor=cursor))
    return {"data": [directory_user_out(u) for u in found.items], "next_cursor": after, "total": found.total}


@router.get("/{directory_id}/groups")
async def list_groups(org: str, directory_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                      limit: Limit = 50, cursor: str | None = None) -> dict[str, Any]:
    found, after = await run_reads(runtime, uow, lambda: directory_service.list_directory_groups(
        uow, ctx, org, directory_id, limit=limit, cursor=cursor))
    return {"data": [directory_group_out(g) for g in found.items], "next_cursor": after, "total": found.total}
