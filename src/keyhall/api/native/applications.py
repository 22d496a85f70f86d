"""``/v1/applications``: the products (OIDC clients) that sign people in through Keyhall."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import iso
from keyhall.api.responses import json_response
from keyhall.core import application_service as service
from keyhall.core.applications import Application
from keyhall.core.ports import ApplicationRepository, UnitOfWork

router = APIRouter(prefix="/v1/applications", tags=["applications"])


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=128)
    redirect_uris: list[str] = Field(min_length=1, max_length=20)
    public: bool = False
    id_token_alg: Literal["RS256", "ES256"] = "RS256"
    allowed_scopes: list[str] | None = Field(default=None, max_length=20)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    backchannel_logout_uri: str | None = Field(default=None, max_length=2048)


class ApplicationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=128)
    redirect_uris: list[str] | None = Field(default=None, min_length=1, max_length=20)
    post_logout_redirect_uris: list[str] | None = Field(default=None, max_length=20)
    backchannel_logout_uri: str | None = Field(default=None, max_length=2048)  # null removes it


class ApplicationOut(BaseModel):
    client_id: str
    name: str
    public: bool
    redirect_uris: list[str]
    allowed_scopes: list[str]
    id_token_alg: str
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None
    client_secret_set: bool
    created_at: str
    updated_at: str


class ApplicationCreated(ApplicationOut):
    client_secret: str | None


def application_out(app: Application) -> dict[str, Any]:
    return {"client_id": app.id, "name": app.name, "public": app.public, "redirect_uris": app.redirect_uris,
            "allowed_scopes": app.allowed_scopes, "id_token_alg": app.id_token_alg,
            "post_logout_redirect_uris": app.post_logout_redirect_uris,
            "backchannel_logout_uri": app.backchannel_logout_uri,
            "client_secret_set": app.secret_hash is not None, "created_at": iso(app.created_at),
            "updated_at": iso(app.updated_at)}


def _apps(uow: UnitOfWork) -> ApplicationRepository:
    return uow.applications


@router.post("", status_code=201, response_model=ApplicationCreated)
def create_application(body: ApplicationCreate, uow: UowDep, ctx: ContextDep) -> Response:
    app, secret = service.create_application(uow, _apps(uow), ctx, name=body.name, redirect_uris=body.redirect_uris,
                                             public=body.public, id_token_alg=body.id_token_alg,
                                             allowed_scopes=body.allowed_scopes,
                                             post_logout_redirect_uris=body.post_logout_redirect_uris,
                                             backchannel_logout_uri=body.backchannel_logout_uri)
    return json_response(ApplicationCreated, {**application_out(app), "client_secret": secret}, status_code=201)


@router.get("", response_model=list[ApplicationOut])
async def list_applications(uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    found = await run_reads(runtime, uow, lambda: service.list_applications(_apps(uow), ctx))
    return [application_out(a) for a in found]


@router.get("/{client_id}", response_model=ApplicationOut)
async def get_application(client_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    return application_out(await run_reads(runtime, uow, lambda: service.get_application(_apps(uow), ctx, client_id)))


@router.patch("/{client_id}", response_model=ApplicationOut)
def update_application(client_id: str, body: ApplicationUpdate, uow: UowDep, ctx: ContextDep) -> Response:
    sent = body.model_fields_set
    app = service.update_application(
        uow, _apps(uow), ctx, client_id, name=body.name, redirect_uris=body.redirect_uris,
        post_logout_redirect_uris=body.post_logout_redirect_uris, backchannel_logout_uri=body.backchannel_logout_uri,
        clear_backchannel_logout_uri="backchannel_logout_uri" in sent and body.backchannel_logout_uri is None)
    return json_response(ApplicationOut, application_out(app))


@router.delete("/{client_id}", status_code=204)
def delete_application(client_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    service.delete_application(uow, _apps(uow), ctx, client_id)
    return Response(status_code=204)
