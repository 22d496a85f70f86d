"""``/v1/organizations/{org}/users``: local password accounts and users pre-created for a connection."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from keyhall.api.deps import ContextDep, UowDep
from keyhall.api.native.schemas import ListOut, iso
from keyhall.core import user_service
from keyhall.core.users import User

router = APIRouter(prefix="/v1/organizations/{org}/users", tags=["users"])


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr
    name: str | None = Field(default=None, max_length=512)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    connection_id: str | None = Field(default=None, max_length=36)


class UserOut(BaseModel):
    id: str
    organization_id: str
    connection_id: str | None
    email: str | None
    email_verified: bool
    name: str | None
    groups: list[str]
    kind: str
    created_at: str
    last_login_at: str | None


def user_out(user: User) -> dict[str, Any]:
    return {"id": user.id, "organization_id": user.organization_id, "connection_id": user.connection_id,
            "email": user.email, "email_verified": user.email_verified, "name": user.name, "groups": user.groups,
            "kind": "local" if user.connection_id is None else ("sso" if user.subject else "precreated"),
            "created_at": iso(user.created_at), "last_login_at": iso(user.last_login_at)}


@router.post("", status_code=201, response_model=UserOut)
def create_user(org: str, body: UserCreate, uow: UowDep, ctx: ContextDep) -> dict[str, Any]:
    return user_out(user_service.create_user(uow, uow.users, ctx, org, email=str(body.email), name=body.name,
                                             password=body.password, connection_id=body.connection_id))


@router.get("", response_model=ListOut[UserOut])
def list_users(org: str, uow: UowDep, ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
               cursor: str | None = None) -> dict[str, Any]:
    page = user_service.list_users(uow, uow.users, ctx, org, limit=limit, cursor=cursor)
    return {"data": [user_out(u) for u in page.items], "next_cursor": page.next_cursor}
