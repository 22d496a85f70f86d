"""SCIM discovery endpoints (RFC 7644 §4), behind the directory's token like the rest."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from keyhall.api.scim.common import in_directory, respond
from keyhall.errors import NotFound
from keyhall.protocols.scim import discovery


def _found(what: str, document: dict[str, Any] | None) -> dict[str, Any]:
    if document is None:
        raise NotFound(f"{what} not found")
    return document


async def service_provider_config(request: Request) -> JSONResponse:
    return respond(await in_directory(request, request.path_params["directory_id"],
                                      lambda sync: discovery.service_provider_config(sync.base_url)))


async def resource_types(request: Request) -> JSONResponse:
    return respond(await in_directory(request, request.path_params["directory_id"],
                                      lambda sync: discovery.resource_types(sync.base_url)))


async def resource_type(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    return respond(await in_directory(request, request.path_params["directory_id"], lambda sync: _found(
        f"resource type {name}", discovery.resource_type(sync.base_url, name))))


async def schemas(request: Request) -> JSONResponse:
    return respond(await in_directory(request, request.path_params["directory_id"],
                                      lambda sync: discovery.schemas(sync.base_url)))


async def schema(request: Request) -> JSONResponse:
    urn = request.path_params["urn"]
    return respond(await in_directory(request, request.path_params["directory_id"], lambda sync: _found(
        f"schema {urn}", discovery.schema(sync.base_url, urn))))


routes: list[BaseRoute] = [
    Route("/{directory_id}/ServiceProviderConfig", service_provider_config, methods=["GET"]),
    Route("/{directory_id}/ResourceTypes", resource_types, methods=["GET"]),
    Route("/{directory_id}/ResourceTypes/{name}", resource_type, methods=["GET"]),
    Route("/{directory_id}/Schemas", schemas, methods=["GET"]),
    Route("/{directory_id}/Schemas/{urn}", schema, methods=["GET"]),
]
