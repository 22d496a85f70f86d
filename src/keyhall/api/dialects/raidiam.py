"""Dialect ``raidiam``: authorisation servers and their SSO configuration, FAPI-style headers.

Translation:
- an *authorisation server* is an OIDC connection of the organisation (its IdP: issuer or
  discovery document, client id and secret, a friendly name);
- its *SSO configuration* is the connection's published listing (the core's ``listing_id``, with
  the display name, contacts, status and DNS text record): at most one per server. Withdrawing it
  (DELETE) makes the connection inactive.

Errors are ``{"errors": ["..."]}``; every response carries ``x-fapi-interaction-id``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.dialects.common import Dialect, prefix_renamer, translated_errors
from keyhall.api.dialects.raidiam_schemas import (
    AuthorisationServerIn,
    AuthorisationServerOut,
    PathId,
    ServerPathId,
    SsoConfigurationIn,
    SsoConfigurationOut,
    fapi_headers,
)
from keyhall.api.http import ErrorStyle
from keyhall.api.native.schemas import iso
from keyhall.api.responses import json_response
from keyhall.core import connection_service as service
from keyhall.core.connection_service import Context
from keyhall.core.connections import Connection, ConnectionInput, connection_urls
from keyhall.core.ports import ConnectionFilter, UnitOfWork
from keyhall.core.validation import validate_model
from keyhall.core.vocabulary import ConnectionStatus, Protocol
from keyhall.errors import InvalidInput, KeyhallError, NotFound

PREFIX = "/organisations"

RENAME = prefix_renamer({
    "display_name": "DisplayName",
    "contacts": "Contacts",
    "status": "Status",
    "text_record": "TextRecord",
    "name": "CustomerFriendlyName",
    "oidc.issuer": "Issuer",
    "oidc.discovery_url": "OpenIDDiscoveryDocument",
    "oidc.client_id": "ClientId",
    "oidc.client_secret": "ClientSecret",
    "oidc.jwks_uri": "OpenIDDiscoveryDocument",
    "oidc": "AuthorisationServer",
})


def render_error(status: int, exc: KeyhallError) -> dict[str, Any]:
    problems = exc.details.get("errors")
    if isinstance(problems, list) and problems:
        messages = [f"{p['field']}: {p['message']}" for p in problems if isinstance(p, dict)]
        return {"errors": messages or [exc.message]}
    field = exc.details.get("field")
    if isinstance(field, str) and not exc.message.startswith(field):
        return {"errors": [f"{field}: {exc.message}"]}
    return {"errors": [exc.message]}


router = APIRouter(prefix=PREFIX, tags=["raidiam"], dependencies=[Depends(fapi_headers)])

def server_out(conn: Connection) -> dict[str, Any]:
    return {
        "AuthorisationServerId": conn.id, "OrganisationId": conn.organization_id,
        "CustomerFriendlyName": conn.name, "Issuer": conn.settings.get("issuer"),
        "OpenIDDiscoveryDocument": conn.settings.get("discovery_url"), "ClientId": conn.settings.get("client_id"),
        "ClientSecretSet": "client_secret" in conn.secrets,
        "Status": "Active" if conn.status is ConnectionStatus.ACTIVE else "Inactive",
        "CreatedAt": iso(conn.created_at), "UpdatedAt": iso(conn.updated_at),
    }


def sso_out(conn: Connection, public_url: str) -> dict[str, Any]:
    return {
        "DisplayName": conn.display_name, "Contacts": list(conn.contacts), "ID": conn.listing_id,
        "ServerID": conn.id, "RedirectUri": connection_urls(public_url, conn)["redirect_uri"],
        "TextRecord": conn.text_record,
        "Status": "Active" if conn.status is ConnectionStatus.ACTIVE else "Inactive",
        "CreatedAt": iso(conn.created_at), "UpdatedAt": iso(conn.updated_at),
    }


def server_input(body: AuthorisationServerIn, *, creating: bool, complete: bool = True) -> ConnectionInput:
    oidc: dict[str, Any] = {}
    for field, key in (("Issuer", "issuer"), ("OpenIDDiscoveryDocument", "discovery_url"),
                       ("ClientId", "client_id"), ("ClientSecret", "client_secret")):
        if field in body.model_fields_set:
            oidc[key] = getattr(body, field)
    # A server is complete with an IdP and a client: these name the page's members the core would
    # otherwise report as oidc.* (translation of required fields, not a rule of its own).
    if complete and not (body.Issuer or body.OpenIDDiscoveryDocument):
        raise InvalidInput("Issuer: give Issuer or OpenIDDiscoveryDocument", field="Issuer")
    if complete and not body.ClientId:
        raise InvalidInput("ClientId: is required", field="ClientId")
    data: dict[str, Any] = {"oidc": oidc}
    if creating:
        data["protocol"] = "oidc"
    if body.CustomerFriendlyName is not None:
        data["name"] = body.CustomerFriendlyName
    return validate_model(ConnectionInput, data)


def sso_input(body: SsoConfigurationIn, *, replace: bool) -> ConnectionInput:
    data: dict[str, Any] = {"status": "active" if body.Status == "Active" else "inactive"}
    for field, key in (("DisplayName", "display_name"), ("Contacts", "contacts"), ("TextRecord", "text_record")):
        if replace or field in body.model_fields_set:
            value = getattr(body, field)
            data[key] = [str(c) for c in value] if key == "contacts" and value else value
    return validate_model(ConnectionInput, data)


def _server(uow: UnitOfWork, ctx: Context, org: str, server_id: str) -> Connection:
    conn = service.get_connection(uow, ctx, org, server_id)
    if conn.protocol is not Protocol.OIDC:
        raise NotFound("authorisation server not found")
    return conn


def _sso(uow: UnitOfWork, ctx: Context, org: str, server_id: str, sso_id: str) -> Connection:
    conn = _server(uow, ctx, org, server_id)
    if conn.listing_id is None or conn.listing_id != sso_id.lower():
        raise NotFound("sso configuration not found")
    return conn


@router.post("/{OrganisationId}/authorisationservers", status_code=201, response_model=AuthorisationServerOut)
def create_server(OrganisationId: PathId, body: AuthorisationServerIn, uow: UowDep, ctx: ContextDep,
                  runtime: RuntimeDep) -> Response:
    with translated_errors(RENAME):
        data = server_input(body, creating=True)
        created = service.create_connection(uow, ctx, OrganisationId, data, runtime.inspector)
    return json_response(AuthorisationServerOut, server_out(created), status_code=201)


@router.get("/{OrganisationId}/authorisationservers", response_model=list[AuthorisationServerOut])
async def list_servers(OrganisationId: PathId, uow: UowDep, ctx: ContextDep,
                       runtime: RuntimeDep) -> list[dict[str, Any]]:
    servers = await run_reads(runtime, uow, lambda: service.find_connections(
        uow, ctx, OrganisationId, ConnectionFilter(protocols=(str(Protocol.OIDC),))))
    return [server_out(c) for c in servers.items]


@router.get("/{OrganisationId}/authorisationservers/{AuthorisationServerId}", response_model=AuthorisationServerOut)
async def get_server(OrganisationId: PathId, AuthorisationServerId: ServerPathId,
                     uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    return server_out(await run_reads(runtime, uow, lambda: _server(uow, ctx, OrganisationId, AuthorisationServerId)))


@router.put("/{OrganisationId}/authorisationservers/{AuthorisationServerId}", response_model=AuthorisationServerOut)
def replace_server(OrganisationId: PathId, AuthorisationServerId: ServerPathId,
                   body: AuthorisationServerIn, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    conn = _server(uow, ctx, OrganisationId, AuthorisationServerId)
    with translated_errors(RENAME):
        data = server_input(body, creating=False, complete=True)
        updated = service.update_connection(uow, ctx, OrganisationId, conn.id, data, runtime.inspector,
                                            replace_all=True)
    return json_response(AuthorisationServerOut, server_out(updated))


@router.delete("/{OrganisationId}/authorisationservers/{AuthorisationServerId}", status_code=204)
def delete_server(OrganisationId: PathId, AuthorisationServerId: ServerPathId,
                  uow: UowDep, ctx: ContextDep) -> Response:
    conn = _server(uow, ctx, OrganisationId, AuthorisationServerId)
    with translated_errors(RENAME):
        service.delete_connection(uow, ctx, OrganisationId, conn.id)
    return Response(status_code=204)


SSO_PATH = "/{OrganisationId}/authorisationservers/{AuthorisationServerId}/sso-configuration"


@router.post(SSO_PATH, status_code=201, response_model=SsoConfigurationOut)
def create_sso(OrganisationId: PathId, AuthorisationServerId: ServerPathId,
               body: SsoConfigurationIn, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    conn = _server(uow, ctx, OrganisationId, AuthorisationServerId)
    with translated_errors(RENAME):
        updated = service.update_connection(uow, ctx, OrganisationId, conn.id, sso_input(body, replace=False),
                                            runtime.inspector, listing="publish")
    return json_response(SsoConfigurationOut, sso_out(updated, runtime.settings.public_url), status_code=201)


@router.get(SSO_PATH, response_model=list[SsoConfigurationOut])
async def list_sso(OrganisationId: PathId, AuthorisationServerId: ServerPathId,
                   uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    conn = await run_reads(runtime, uow, lambda: _server(uow, ctx, OrganisationId, AuthorisationServerId))
    return [sso_out(conn, runtime.settings.public_url)] if conn.listing_id else []


@router.get(SSO_PATH + "/{ssoConfigurationId}", response_model=SsoConfigurationOut)
async def get_sso(OrganisationId: PathId, AuthorisationServerId: ServerPathId, ssoConfigurationId: str,
                  uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    conn = await run_reads(runtime, uow,
                           lambda: _sso(uow, ctx, OrganisationId, AuthorisationServerId, ssoConfigurationId))
    return sso_out(conn, runtime.settings.public_url)


@router.put(SSO_PATH + "/{ssoConfigurationId}", response_model=SsoConfigurationOut)
def replace_sso(OrganisationId: PathId, AuthorisationServerId: ServerPathId, ssoConfigurationId: str,
                body: SsoConfigurationIn, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    conn = _sso(uow, ctx, OrganisationId, AuthorisationServerId, ssoConfigurationId)
    with translated_errors(RENAME):
        updated = service.update_connection(uow, ctx, OrganisationId, conn.id, sso_input(body, replace=True),
                                            runtime.inspector)
    return json_response(SsoConfigurationOut, sso_out(updated, runtime.settings.public_url))


@router.delete(SSO_PATH + "/{ssoConfigurationId}", status_code=204)
def delete_sso(OrganisationId: PathId, AuthorisationServerId: ServerPathId, ssoConfigurationId: str,
               uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    conn = _sso(uow, ctx, OrganisationId, AuthorisationServerId, ssoConfigurationId)
    with translated_errors(RENAME):
        # The SSO configuration's Status is the connection's status: without one, SSO is not offered.
        withdraw = validate_model(ConnectionInput, {"status": "inactive"})
        service.update_connection(uow, ctx, OrganisationId, conn.id, withdraw, runtime.inspector,
                                  listing="withdraw")
    return Response(status_code=204)


DIALECT = Dialect("raidiam", router, ErrorStyle(prefix=PREFIX + "/", render=render_error))
