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
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep
from keyhall.api.dialects.common import Dialect, dialect_errors, parse_model, prefix_renamer
from keyhall.core import connection_service as service
from keyhall.core.connection_service import Context
from keyhall.core.connection_settings import PROFILE_FIELDS
from keyhall.core.connections import Connection, ConnectionInput, connection_urls, sp_entity_id
from keyhall.core.organizations import Organization
from keyhall.core.ports import ConnectionFilter, UnitOfWork
from keyhall.core.vocabulary import SECRET_MASK, Protocol, Provider
from keyhall.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api", tags=["logto"])
assets = APIRouter(tags=["logto"])

LOGO_DIR = Path(__file__).resolve().parents[2] / "web" / "static" / "providers"


@dataclass(frozen=True)
class ConnectorProvider:
    provider_name: str
    provider: Provider
    protocol: Protocol
    name: str
    logo: str
    description: str


PROVIDERS = (
    ConnectorProvider("OIDC", Provider.GENERIC, Protocol.OIDC, "OIDC", "oidc",
                      "Any OpenID Connect identity provider, found through its discovery document."),
    ConnectorProvider("SAML", Provider.GENERIC, Protocol.SAML, "SAML", "saml",
                      "Any SAML 2.0 identity provider, described by metadata or by hand."),
    ConnectorProvider("AzureAD", Provider.AZURE_AD, Protocol.SAML, "Microsoft Entra ID", "entra-id",
                      "Microsoft Entra ID (formerly Azure AD) over SAML 2.0."),
    ConnectorProvider("GoogleWorkspace", Provider.GOOGLE_WORKSPACE, Protocol.OIDC, "Google Workspace",
                      "google-workspace", "Google Workspace accounts over OpenID Connect."),
    ConnectorProvider("Okta", Provider.OKTA, Protocol.OIDC, "Okta", "okta", "Okta over OpenID Connect."),
    ConnectorProvider("AzureAdOidc", Provider.AZURE_AD, Protocol.OIDC, "Microsoft Entra ID (OIDC)", "entra-id",
                      "Microsoft Entra ID (formerly Azure AD) over OpenID Connect."),
)
BY_NAME = {p.provider_name: p for p in PROVIDERS}
BY_PAIR = {(p.provider, p.protocol): p for p in PROVIDERS}
GENERIC = {Protocol.OIDC: BY_NAME["OIDC"], Protocol.SAML: BY_NAME["SAML"]}
LOGOS = frozenset(f"{p.logo}{suffix}" for p in PROVIDERS for suffix in ("", "-dark"))

ProviderName = Literal["OIDC", "SAML", "AzureAD", "GoogleWorkspace", "Okta", "AzureAdOidc"]

CONFIG_KEYS: dict[Protocol, dict[str, str]] = {
    Protocol.OIDC: {"clientId": "client_id", "clientSecret": "client_secret", "issuer": "issuer", "scope": "scope"},
    Protocol.SAML: {"metadataUrl": "metadata_url", "metadata": "metadata_xml", "entityId": "idp_entity_id",
                    "signInEndpoint": "sso_url", "x509Certificate": "certificates"},
}
SECRET_KEYS = frozenset({"client_secret"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


ATTRIBUTE_KEYS = {("id" if f == "subject" else _camel(f)): f for f in PROFILE_FIELDS}
ATTRIBUTE_NAMES = {core: logto for logto, core in ATTRIBUTE_KEYS.items()}

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


def logto_errors() -> AbstractContextManager[None]:
    """Core errors in this API's field names, the field named at the head of the message."""
    return dialect_errors(rename)


# --- request bodies ---------------------------------------------------------------------------

ConnectorName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Body(BaseModel):
    """Strict bodies in Logto's camelCase wire names."""

    model_config = ConfigDict(extra="forbid", strict=True)


class BrandingIn(_Body):
    displayName: str | None = None
    logo: str | None = None
    darkLogo: str | None = None


class ConnectorPatch(_Body):
    """``PATCH /api/sso-connectors/{id}``: every field optional; ``branding: null`` clears it."""

    config: dict[str, Any] | None = None
    domains: list[str] | None = None
    branding: BrandingIn | None = None
    syncProfile: bool | None = None
    connectorName: ConnectorName | None = None

    @field_validator("config", "domains", "syncProfile", "connectorName", "providerName", mode="before",
                     check_fields=False)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value


class ConnectorCreate(ConnectorPatch):
    providerName: ProviderName
    connectorName: ConnectorName


def _config_to_core(protocol: Protocol, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Logto ``config`` → the core's protocol block, and the attribute mappings when given."""
    names = CONFIG_KEYS[protocol]
    block: dict[str, Any] = {}
    mappings: dict[str, Any] | None = None
    for key, value in config.items():
        if protocol is Protocol.SAML and key == "attributeMapping":
            mappings = _mapping_to_core(value)
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


def _mapping_to_core(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput("config.attributeMapping: must be an object", field="config.attributeMapping")
    mapped: dict[str, Any] = {}
    for key, attribute in value.items():
        if key not in ATTRIBUTE_KEYS:
            raise InvalidInput(
                f"config.attributeMapping.{key}: is not a profile field (known: {', '.join(ATTRIBUTE_KEYS)})",
                field=f"config.attributeMapping.{key}",
            )
        mapped[ATTRIBUTE_KEYS[key]] = attribute
    return mapped


def _input(body: ConnectorPatch, protocol: Protocol, extra: dict[str, Any]) -> ConnectionInput:
    data = dict(extra)
    given = body.model_fields_set
    if "config" in given or "protocol" in extra:
        block, mappings = _config_to_core(protocol, body.config or {})
        data[str(protocol)] = block
        if mappings is not None:
            data["attribute_mappings"] = mappings
    if "connectorName" in given:
        data["name"] = body.connectorName
    if "domains" in given:
        data["domains"] = body.domains
    if "syncProfile" in given:
        data["sync_profile"] = body.syncProfile
    if "branding" in given:
        branding = body.branding
        data["branding"] = None if branding is None else {
            core: getattr(branding, logto) for logto, core in
            (("displayName", "display_name"), ("logo", "logo"), ("darkLogo", "dark_logo"))
            if logto in branding.model_fields_set
        }
    return parse_model(ConnectionInput, data)


# --- responses ---------------------------------------------------------------------------------

class ConnectorOut(BaseModel):
    tenantId: str
    id: str
    providerName: str
    connectorName: str
    config: dict[str, Any]
    domains: list[str]
    branding: dict[str, str]
    syncProfile: bool
    createdAt: int  # milliseconds since the epoch
    name: str
    providerType: Literal["oidc", "saml"]
    providerLogo: str
    providerLogoDark: str
    providerConfig: dict[str, Any]


class ProviderOut(BaseModel):
    providerName: str
    providerType: Literal["oidc", "saml"]
    name: str
    logo: str
    logoDark: str
    description: str


def _logo_url(public_url: str, stem: str) -> str:
    return f"{public_url.rstrip('/')}/static/providers/{stem}.svg"


def _camelize(value: Any) -> Any:
    """snake_case keys → camelCase, recursively; other keys (binding URIs, kids) stay as they are."""
    if isinstance(value, dict):
        return {(_camel(k) if isinstance(k, str) and re.fullmatch(r"[a-z0-9]+(?:_[a-z0-9]+)+", k) else k):
                _camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camelize(v) for v in value]
    return value


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
    found = _camelize(dict(conn.discovered or {}))
    urls = connection_urls(public_url, conn)
    if conn.protocol is Protocol.SAML:
        found["serviceProvider"] = {"entityId": sp_entity_id(public_url, conn),
                                    "assertionConsumerServiceUrl": urls["acs_url"],
                                    "metadataUrl": urls["sp_metadata_url"]}
    else:
        found["redirectUri"] = urls["redirect_uri"]
    return dict(found)


def connector_out(conn: Connection, org: Organization, public_url: str) -> dict[str, Any]:
    kind = BY_PAIR.get((conn.provider, conn.protocol)) or GENERIC[conn.protocol]
    branding = {logto: conn.branding[core] for logto, core in
                (("displayName", "display_name"), ("logo", "logo"), ("darkLogo", "dark_logo"))
                if conn.branding.get(core) is not None}
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
    if ctx.principal.organization_id is None:
        raise InvalidInput(
            "Authorization: SSO connectors belong to the calling key's organization; use an organization's "
            "API key, not an instance-admin key", field="Authorization",
        )
    return service.organization_for(uow, ctx, ctx.principal.organization_id)


def _connector(uow: UnitOfWork, ctx: Context, org: Organization, connector_id: str) -> Connection:
    conn = service.get_connection(uow, ctx, org.id, connector_id)
    if conn.protocol not in GENERIC:
        raise NotFound("SSO connector not found", details={"id": connector_id})
    return conn


@router.get("/sso-connector-providers", response_model=list[ProviderOut])
def list_providers(ctx: ContextDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    url = runtime.settings.public_url
    return [{"providerName": p.provider_name, "providerType": str(p.protocol), "name": p.name,
             "logo": _logo_url(url, p.logo), "logoDark": _logo_url(url, f"{p.logo}-dark"),
             "description": p.description} for p in PROVIDERS]


@router.get("/sso-connectors", response_model=list[ConnectorOut])
def list_connectors(
    uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, response: Response,
    page: Annotated[int | None, Query(ge=1)] = None, page_size: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> list[dict[str, Any]]:
    org = _organization(uow, ctx)
    everything = ConnectionFilter(protocols=tuple(str(p) for p in GENERIC))
    if page is None and page_size is None:
        found = service.find_connections(uow, ctx, org.id, everything)
    else:
        size = page_size or 20
        found = service.find_connections(uow, ctx, org.id, everything, offset=((page or 1) - 1) * size, limit=size)
    response.headers["Total-Number"] = str(found.total)
    return [connector_out(c, org, runtime.settings.public_url) for c in found.items]


@router.post("/sso-connectors", response_model=ConnectorOut)
def create_connector(body: ConnectorCreate, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    org = _organization(uow, ctx)
    kind = BY_NAME[body.providerName]
    with logto_errors():
        data = _input(body, kind.protocol, {"protocol": kind.protocol, "provider": kind.provider})
        conn = service.create_connection(uow, ctx, org.id, data, runtime.inspector)
    return connector_out(conn, org, runtime.settings.public_url)


@router.get("/sso-connectors/{connector_id}", response_model=ConnectorOut)
def get_connector(connector_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    org = _organization(uow, ctx)
    return connector_out(_connector(uow, ctx, org, connector_id), org, runtime.settings.public_url)


@router.patch("/sso-connectors/{connector_id}", response_model=ConnectorOut)
def update_connector(
    connector_id: str, body: ConnectorPatch, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep
) -> dict[str, Any]:
    org = _organization(uow, ctx)
    existing = _connector(uow, ctx, org, connector_id)
    with logto_errors():
        data = _input(body, existing.protocol, {})
        conn = service.update_connection(uow, ctx, org.id, existing.id, data, runtime.inspector)
    return connector_out(conn, org, runtime.settings.public_url)


@router.delete("/sso-connectors/{connector_id}", status_code=204)
def delete_connector(connector_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    org = _organization(uow, ctx)
    existing = _connector(uow, ctx, org, connector_id)
    with logto_errors():
        service.delete_connection(uow, ctx, org.id, existing.id)
    return Response(status_code=204)


@assets.get("/static/providers/{logo}.svg", include_in_schema=False)
def provider_logo(logo: str) -> Response:
    """The connector providers' logos: plain drawn squares with initials, not vendor marks."""
    if logo not in LOGOS or not (LOGO_DIR / f"{logo}.svg").is_file():
        raise NotFound("no such logo")
    return Response((LOGO_DIR / f"{logo}.svg").read_bytes(), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})


DIALECT = Dialect("logto", router, public=(assets,))
