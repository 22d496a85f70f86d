"""Dialect `logto`: ``/api/sso-connectors`` and ``/api/sso-connector-providers`` in Logto's shape.

An SSO connector is a Keyhall connection seen through Logto's names. The organization is the
calling key's (Logto's tenant): ``tenantId`` is the organization's ``short_id``, and an
instance-admin key, which has no organization, gets 400. Only OIDC and SAML connections are
connectors; LDAP connections are invisible here (absent from lists, 404 by id).

``providerName`` maps to a core (provider, protocol) pair; a pair Logto cannot name shows as
its protocol's generic connector (``OIDC`` or ``SAML``). ``config`` uses Logto's keys:

- OIDC: ``clientId``, ``clientSecret`` (answered as ``SECRET_MASK``; the mask sent back keeps the
  secret), ``issuer``, ``scope``.
- SAML: ``metadataUrl``, ``metadata`` (XML), ``entityId`` (the IdP's), ``signInEndpoint`` (its SSO
  URL), ``x509Certificate`` (one PEM; the first when several are stored), ``attributeMapping``
  (Logto's ``id`` is Keyhall's ``subject``; other profile fields in camelCase).

Any other ``config`` key is 400 naming ``config.<key>``. A ``config`` in PATCH is merged into the
stored one (a key sent as null is removed); settings that Logto cannot name are kept. POST answers
200 (as Logto does), DELETE 204. ``providerConfig`` is what Keyhall learned from the IdP
(discovery document or parsed metadata, certificate expiry included) plus the service-provider
URLs to register there. Lists: without ``page``/``page_size`` every connector is returned; with
either, ``page`` (from 1) and ``page_size`` (1-100, default 20) select a slice. ``Total-Number``
always counts them all. Errors use the native ``{"error": {...}}`` shape: the page shows none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.dialects import logto_schemas as wire
from keyhall.api.dialects.common import (
    Dialect,
    camelize,
    dialect_errors,
    key_organization,
    mapping_to_core,
    parse_model,
    prefix_renamer,
)
from keyhall.api.dialects.logto_schemas import ATTRIBUTE_KEYS, ATTRIBUTE_NAMES, BRANDING, CONFIG_KEYS, SECRET_KEYS
from keyhall.api.responses import json_response
from keyhall.core import connection_service as service
from keyhall.core.connection_service import Context
from keyhall.core.connections import Connection, ConnectionInput, connection_urls, sp_entity_id
from keyhall.core.organizations import Organization
from keyhall.core.ports import ConnectionFilter, Slice, UnitOfWork
from keyhall.core.vocabulary import SECRET_MASK, Protocol
from keyhall.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api", tags=["logto"])
assets = APIRouter(tags=["logto"])

LOGO_DIR = Path(__file__).resolve().parents[2] / "web" / "static" / "providers"


_RENAME_FIXED = prefix_renamer({
    "name": "connectorName", "sync_profile": "syncProfile", "branding.display_name": "branding.displayName",
    "branding.dark_logo": "branding.darkLogo", "oidc.client_id": "config.clientId",
    "oidc.client_secret": "config.clientSecret", "oidc.issuer": "config.issuer", "oidc.scope": "config.scope",
    "oidc.jwks_uri": "config.issuer", "oidc": "config", "saml.metadata_url": "config.metadataUrl",
    "saml.metadata_xml": "config.metadata", "saml.idp_entity_id": "config.entityId",
    "saml.sso_url": "config.signInEndpoint", "saml.certificates": "config.x509Certificate", "saml": "config",
})


def rename(path: str) -> str:
    """A core field path in Logto's names (``saml.certificates[0]`` → ``config.x509Certificate``)."""
    if path.startswith("attribute_mappings"):
        key = path.removeprefix("attribute_mappings").lstrip(".")
        return "config.attributeMapping" + (f".{ATTRIBUTE_NAMES.get(key, key)}" if key else "")
    return re.sub(r"^config\.x509Certificate\[\d+\]", "config.x509Certificate", _RENAME_FIXED(path))


def _config_to_core(protocol: Protocol, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Logto ``config`` → the core's protocol block, and the attribute mappings when given."""
    names = CONFIG_KEYS[protocol]
    block: dict[str, Any] = {}
    mappings: dict[str, Any] | None = None
    for key, value in config.items():
        if protocol is Protocol.SAML and key == "attributeMapping":
            mappings = mapping_to_core(value, ATTRIBUTE_KEYS, "config.attributeMapping")
        elif key not in names:
            known = ", ".join([*names, *(["attributeMapping"] if protocol is Protocol.SAML else [])])
            raise InvalidInput(f"config.{key}: is not a known field of {protocol} connectors (known: {known})",
                               field=f"config.{key}")
        elif names[key] == "certificates":
            if value is not None and not isinstance(value, str):
                raise InvalidInput("config.x509Certificate: must be a PEM certificate string",
                                   field="config.x509Certificate")
            block["certificates"] = None if value is None else [value]
        else:
            block[names[key]] = value
    return block, mappings


def _input(body: wire.ConnectorPatch, protocol: Protocol, extra: dict[str, Any]) -> ConnectionInput:
    data = dict(extra)
    given = body.model_fields_set
    if "config" in given or "protocol" in extra:
        block, mappings = _config_to_core(protocol, body.config or {})
        data[str(protocol)] = block
        if mappings is not None:
            data["attribute_mappings"] = mappings
    for logto, core in (("connectorName", "name"), ("domains", "domains"), ("syncProfile", "sync_profile")):
        if logto in given:
            data[core] = getattr(body, logto)
    if "branding" in given:
        branding = body.branding
        data["branding"] = None if branding is None else {
            core: getattr(branding, logto) for logto, core in BRANDING if logto in branding.model_fields_set}
    return parse_model(ConnectionInput, data)


def _logo_url(public_url: str, stem: str) -> str:
    return f"{public_url.rstrip('/')}/static/providers/{stem}.svg"


def _config_out(conn: Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, core in CONFIG_KEYS[conn.protocol].items():
        if core in SECRET_KEYS:
            if core in conn.secrets:
                out[key] = SECRET_MASK
        elif core == "certificates":
            if conn.settings.get("certificates"):
                out[key] = conn.settings["certificates"][0]
        elif conn.settings.get(core) is not None:
            out[key] = conn.settings[core]
    if conn.protocol is Protocol.SAML:
        out["attributeMapping"] = {ATTRIBUTE_NAMES.get(k, k): v for k, v in conn.attribute_mappings.items()}
    return out


def _provider_config(conn: Connection, public_url: str) -> dict[str, Any]:
    found = camelize(dict(conn.discovered or {}))
    urls = connection_urls(public_url, conn)
    if conn.protocol is Protocol.SAML:
        found["serviceProvider"] = {"entityId": sp_entity_id(public_url, conn),
                                    "assertionConsumerServiceUrl": urls["acs_url"],
                                    "metadataUrl": urls["sp_metadata_url"]}
    else:
        found["redirectUri"] = urls["redirect_uri"]
    return dict(found)


def connector_out(conn: Connection, org: Organization, public_url: str) -> dict[str, Any]:
    kind = wire.BY_PAIR.get((conn.provider, conn.protocol)) or wire.GENERIC[conn.protocol]
    branding = {logto: conn.branding[core] for logto, core in BRANDING if conn.branding.get(core) is not None}
    return {
        "tenantId": org.short_id, "id": conn.id, "providerName": kind.provider_name, "connectorName": conn.name,
        "config": _config_out(conn), "domains": list(conn.domains), "branding": branding,
        "syncProfile": conn.sync_profile, "createdAt": int(conn.created_at.timestamp() * 1000),
        "name": kind.name, "providerType": str(conn.protocol),
        "providerLogo": _logo_url(public_url, kind.logo),
        "providerLogoDark": _logo_url(public_url, f"{kind.logo}-dark"),
        "providerConfig": _provider_config(conn, public_url),
    }


# --- routes ------------------------------------------------------------------------------------

def _organization(uow: UnitOfWork, ctx: Context) -> Organization:
    return key_organization(uow, ctx, "SSO connectors")


def _connector(uow: UnitOfWork, ctx: Context, connector_id: str) -> tuple[Organization, Connection]:
    org = _organization(uow, ctx)
    conn = service.get_connection(uow, ctx, org.id, connector_id)
    if conn.protocol not in wire.GENERIC:
        raise NotFound("SSO connector not found", details={"id": connector_id})
    return org, conn


@router.get("/sso-connector-providers", response_model=list[wire.ProviderOut])
async def list_providers(ctx: ContextDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    url = runtime.settings.public_url
    return [{"providerName": p.provider_name, "providerType": str(p.protocol), "name": p.name,
             "logo": _logo_url(url, p.logo), "logoDark": _logo_url(url, f"{p.logo}-dark"),
             "description": p.description} for p in wire.PROVIDERS]


@router.get("/sso-connectors", response_model=list[wire.ConnectorOut])
async def list_connectors(
    uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, response: Response,
    page: Annotated[int | None, Query(ge=1)] = None, page_size: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> list[dict[str, Any]]:
    everything = ConnectionFilter(protocols=tuple(str(p) for p in wire.GENERIC))

    def read() -> tuple[Organization, Slice[Connection]]:
        org = _organization(uow, ctx)
        if page is None and page_size is None:
            return org, service.find_connections(uow, ctx, org.id, everything)
        size = page_size or 20
        return org, service.find_connections(uow, ctx, org.id, everything, offset=((page or 1) - 1) * size, limit=size)

    org, found = await run_reads(runtime, uow, read)
    response.headers["Total-Number"] = str(found.total)
    return [connector_out(c, org, runtime.settings.public_url) for c in found.items]


@router.post("/sso-connectors", response_model=wire.ConnectorOut)
def create_connector(body: wire.ConnectorCreate, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    org = _organization(uow, ctx)
    kind = wire.BY_NAME[body.providerName]
    with dialect_errors(rename):
        data = _input(body, kind.protocol, {"protocol": kind.protocol, "provider": kind.provider})
        conn = service.create_connection(uow, ctx, org.id, data, runtime.inspector)
    return json_response(wire.ConnectorOut, connector_out(conn, org, runtime.settings.public_url))


@router.get("/sso-connectors/{connector_id}", response_model=wire.ConnectorOut)
async def get_connector(connector_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    org, conn = await run_reads(runtime, uow, lambda: _connector(uow, ctx, connector_id))
    return connector_out(conn, org, runtime.settings.public_url)


@router.patch("/sso-connectors/{connector_id}", response_model=wire.ConnectorOut)
def update_connector(
    connector_id: str, body: wire.ConnectorPatch, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep
) -> Response:
    org, existing = _connector(uow, ctx, connector_id)
    with dialect_errors(rename):
        data = _input(body, existing.protocol, {})
        conn = service.update_connection(uow, ctx, org.id, existing.id, data, runtime.inspector)
    return json_response(wire.ConnectorOut, connector_out(conn, org, runtime.settings.public_url))


@router.delete("/sso-connectors/{connector_id}", status_code=204)
def delete_connector(connector_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    org, existing = _connector(uow, ctx, connector_id)
    with dialect_errors(rename):
        service.delete_connection(uow, ctx, org.id, existing.id)
    return Response(status_code=204)


@assets.get("/static/providers/{logo}.svg", include_in_schema=False)
def provider_logo(logo: str) -> Response:
    """The connector providers' logos: plain drawn squares with initials, not vendor marks."""
    if logo not in wire.LOGOS or not (LOGO_DIR / f"{logo}.svg").is_file():
        raise NotFound("no such logo")
    return Response((LOGO_DIR / f"{logo}.svg").read_bytes(), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})


DIALECT = Dialect("logto", router, public=(assets,))
