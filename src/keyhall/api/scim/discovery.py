"""SCIM discovery endpoints (RFC 7644 §4), behind the directory's token like the rest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import in_directory, respond
from keyhall.errors import NotFound
from keyhall.protocols.scim import discovery

router = APIRouter(prefix="/{directory_id}", tags=["scim"], include_in_schema=False)


def _found(what: str, document: dict[str, Any] | None) -> dict[str, Any]:
    if document is None:
        raise NotFound(f"{what} not found")
    return document


@router.get("/ServiceProviderConfig")
async def service_provider_config(directory_id: str, request: Request) -> JSONResponse:
    return respond(await in_directory(request, directory_id,
                                      lambda sync: discovery.service_provider_config(sync.base_url)))


@router.get("/ResourceTypes")
async def resource_types(directory_id: str, request: Request) -> JSONResponse:
    return respond(await in_directory(request, directory_id, lambda sync: discovery.resource_types(sync.base_url)))


@router.get("/ResourceTypes/{name}")
async def resource_type(directory_id: str, name: str, request: Request) -> JSONResponse:
    return respond(await in_directory(request, directory_id, lambda sync: _found(
        f"resource type {name}", discovery.resource_type(sync.base_url, name))))


@router.get("/Schemas")
async def schemas(directory_id: str, request: Request) -> JSONResponse:
    return respond(await in_directory(request, directory_id, lambda sync: discovery.schemas(sync.base_url)))


@router.get("/Schemas/{urn}")
async def schema(directory_id: str, urn: str, request: Request) -> JSONResponse:
    return respond(await in_directory(request, directory_id, lambda sync: _found(
        f"schema {urn}", discovery.schema(sync.base_url, urn))))
