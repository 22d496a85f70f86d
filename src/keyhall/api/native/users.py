"""``/v1/organizations/{org}/users``: local password accounts, users pre-created for a connection and
users provisioned by sign-in; read, change (``disabled``, profile names) and delete one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import ListOut, iso
from keyhall.api.responses import json_response
from keyhall.core import user_service
from keyhall.core.connection_service import parse_if_match
from keyhall.core.users import User

router = APIRouter(prefix="/v1/organizations/{org}/users", tags=["users"])


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr
    name: str | None = Field(default=None, max_length=512)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    connection_id: str | None = Field(default=None, max_length=36)


IfMatch = Annotated[str | None, Header(alias="If-Match")]
Name = Annotated[str | None, Field(default=None, min_length=1, max_length=512)]


class UserUpdate(BaseModel):
    """``PATCH``: only the fields sent change; ``null`` clears a name. ``email`` is not writable (it is
    what the IdP or the account's creation vouched for)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    disabled: bool | None = None
    name: Name = None
    given_name: Name = None
    family_name: Name = None

    @field_validator("disabled")
    @classmethod
    def _disabled_not_null(cls, value: bool | None) -> bool:
        if value is None:
            raise ValueError("must be true or false")
        return value


class UserOut(BaseModel):
    id: str
    organization_id: str
    connection_id: str | None
    directory_id: str | None
    email: str | None
    email_verified: bool
    name: str | None
    given_name: str | None
    family_name: str | None
    groups: list[str]
    kind: str
    disabled: bool
    version: int
    created_at: str
    updated_at: str
    last_login_at: str | None


def _kind(user: User) -> str:
    if user.directory_id is not None:
        return "directory"
    return "local" if user.connection_id is None else ("sso" if user.subject else "precreated")


def user_out(user: User) -> dict[str, Any]:
    return {"id": user.id, "organization_id": user.organization_id, "connection_id": user.connection_id,
            "directory_id": user.directory_id,
            "email": user.email, "email_verified": user.email_verified, "name": user.name,
            "given_name": user.given_name, "family_name": user.family_name, "groups": user.groups,
            "kind": _kind(user),
            "disabled": user.disabled, "version": user.version, "created_at": iso(user.created_at),
            "updated_at": iso(user.updated_at), "last_login_at": iso(user.last_login_at)}


@router.post("", status_code=201, response_model=UserOut)
def create_user(org: str, body: UserCreate, uow: UowDep, ctx: ContextDep) -> Response:
    user = user_service.create_user(uow, uow.users, ctx, org, email=str(body.email), name=body.name,
                                    password=body.password, connection_id=body.connection_id)
    return json_response(UserOut, user_out(user), status_code=201,
                         headers={"ETag": user_service.etag(user),
                                  "Location": f"/v1/organizations/{org}/users/{user.id}"})


@router.get("", response_model=ListOut[UserOut])
async def list_users(org: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None) -> dict[str, Any]:
    page = await run_reads(runtime, uow, lambda: user_service.list_users(uow, uow.users, ctx, org, limit=limit,
                                                                        cursor=cursor))
    return {"data": [user_out(u) for u in page.items], "next_cursor": page.next_cursor}


@router.get("/{user_id}", response_model=UserOut)
async def get_user(org: str, user_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                   response: Response) -> dict[str, Any]:
    user = await run_reads(runtime, uow, lambda: user_service.get_user(uow, uow.users, ctx, org, user_id))
    response.headers["ETag"] = user_service.etag(user)
    return user_out(user)


@router.patch("/{user_id}", response_model=UserOut)
def update_user(org: str, user_id: str, body: UserUpdate, uow: UowDep, ctx: ContextDep,
                if_match: IfMatch = None) -> Response:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    user = user_service.update_user(uow, uow.users, uow.grants, ctx, org, user_id, changes,
                                    expected_version=parse_if_match(if_match))
    return json_response(UserOut, user_out(user), headers={"ETag": user_service.etag(user)})


@router.delete("/{user_id}", status_code=204)
def delete_user(org: str, user_id: str, uow: UowDep, ctx: ContextDep, if_match: IfMatch = None) -> Response:
    user_service.delete_user(uow, uow.users, uow.grants, ctx, org, user_id,
                             expected_version=parse_if_match(if_match))
    return Response(status_code=204)
