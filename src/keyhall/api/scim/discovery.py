"""SCIM discovery endpoints (RFC 7644 §4), behind the directory's token like the rest."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from keyhall.api.scim.common import PREFIX, SyncDep, respond
from keyhall.errors import NotFound
from keyhall.protocols.scim import discovery

router = APIRouter(prefix=PREFIX + "/{directory_id}", tags=["scim"])


@router.get("/ServiceProviderConfig")
def service_provider_config(sync: SyncDep) -> JSONResponse:
    return respond(discovery.service_provider_config(sync.base_url))


@router.get("/ResourceTypes")
def resource_types(sync: SyncDep) -> JSONResponse:
    return respond(discovery.resource_types(sync.base_url))


@router.get("/ResourceTypes/{name}")
def resource_type(name: str, sync: SyncDep) -> JSONResponse:
    found = discovery.resource_type(sync.base_url, name)
    if found is None:
        raise NotFound(f"resource type {name} not found")
    return respond(found)


@router.get("/Schemas")
def schemas(sync: SyncDep) -> JSONResponse:
    return respond(discovery.schemas(sync.base_url))


@router.get("/Schemas/{urn}")
def schema(urn: str, sync: SyncDep) -> JSONResponse:
    found = discovery.schema(sync.base_url, urn)
    if found is None:
        raise NotFound(f"schema {urn} not found")
    return respond(found)
