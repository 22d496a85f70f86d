"""Dialect `configurations`: ``/api/v1/sso/configurations`` (CreateSSOConfig and the rest of the resource).

An SSO configuration is a Keyhall connection in this API's names; its ``uuid`` is the connection
id. Configurations belong to the calling key's organization: ``tenantUuid`` is required, as the
page says, and ignored (an instance-admin key, which has no organization, gets 400).

- ``providerType`` (OIDC|SAML|LDAP) and ``protocol`` (oidc|saml|ldap) must agree, else 400.
- The block of that protocol (``oidcConfig``/``samlConfig``/``ldapConfig``) is required on POST
  and PUT and is the one stored and checked against the IdP. Blocks of other protocols are
  checked for shape and limits only, then ignored; the response names them in the
  ``Keyhall-Ignored-Fields`` header (the page's full example sends all three).
- ``displayName`` is both the connection's display name (≤ 64) and its name (unique in the
  organization: a second configuration with the same displayName is 409).
- ``attributeMappings`` maps a profile field (``subject``, ``email``, ``emailVerified``, ``name``,
  ``givenName``, ``familyName``, ``username``, ``picture``, ``locale``, ``phoneNumber``,
  ``groups``) to the IdP's attribute or claim name; ``groupMappings`` is a list of
  ``{"idpGroup", "group"}``. ``ldapConfig.useSsl`` true is LDAPS, false plain LDAP.
- PUT replaces: the result is what a POST of the same body would give (absent optional fields
  take their defaults, attribute mappings start from the provider preset). PATCH merges; a
  key of a config block sent as null is removed. POST, GET, PUT and PATCH answer 200, DELETE 204.
- Responses carry the page's fields plus ``ldapConfig``, the provisioning settings, the
  mappings and ``createdAt``/``updatedAt`` (ISO 8601). Secrets are never returned: the config
  says ``clientSecretSet``/``bindPasswordSet``; blocks of other protocols are ``{}``.
  ``redirectUri`` and ``spEntityId`` are the values in effect (what to register at the IdP).
- Lists are a JSON array, ``limit`` (1-200, default 50) and ``cursor``; a ``Link: <…>; rel="next"``
  header points at the next page. Errors use the native ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep
from keyhall.api.dialects.common import Dialect, dialect_errors, parse_model, prefix_renamer
from keyhall.api.native.schemas import iso
from keyhall.core import connection_service as service
from keyhall.core.connection_service import Context
from keyhall.core.connection_settings import PROFILE_FIELDS, PROTOCOL_MODELS, SECRET_FIELDS
from keyhall.core.connections import Connection, ConnectionInput, connection_urls, sp_entity_id
from keyhall.core.organizations import Organization
from keyhall.core.ports import UnitOfWork
from keyhall.core.presets import preset_for
from keyhall.core.validation import field_path
from keyhall.core.vocabulary import LdapSecurity, Protocol, Provider
from keyhall.errors import InvalidInput

router = APIRouter(prefix="/api/v1/sso/configurations", tags=["configurations"])

BLOCKS = {Protocol.OIDC: "oidcConfig", Protocol.SAML: "samlConfig", Protocol.LDAP: "ldapConfig"}
KEYS: dict[Protocol, dict[str, str]] = {
    Protocol.OIDC: {"clientId": "client_id", "clientSecret": "client_secret", "wellKnownUrl": "discovery_url",
                    "redirectUri": "redirect_uri", "scope": "scope", "configName": "config_name"},
    Protocol.SAML: {"idpEntityId": "idp_entity_id", "idpSsoUrl": "sso_url", "idpSloUrl": "slo_url",
                    "idpCertificate": "certificates", "idpMetadataUrl": "metadata_url", "spEntityId": "sp_entity_id",
                    "nameIdFormat": "name_id_format", "signRequests": "sign_requests", "forceAuthn": "force_authn",
                    "spCertificatePem": "sp_certificate"},
    Protocol.LDAP: {"serverAddress": "server", "port": "port", "baseDn": "base_dn", "bindDn": "bind_dn",
                    "bindPassword": "bind_password", "userSearchBase": "user_search_base",
                    "userSearchFilter": "user_search_filter", "useSsl": "security"},
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


PROFILE_KEYS = {_camel(f): f for f in PROFILE_FIELDS}

_RENAME_FIXED = prefix_renamer({
    "name": "displayName", "display_name": "displayName", "user_provisioning": "userProvisioning",
    "group_provisioning": "groupProvisioning", "group_mappings": "groupMappings",
    "oidc.issuer": "oidcConfig.wellKnownUrl", "oidc.jwks_uri": "oidcConfig.wellKnownUrl",
    **{f"{p}.{core}": f"{BLOCKS[p]}.{key}" for p, keys in KEYS.items() for key, core in keys.items()},
    **{str(p): block for p, block in BLOCKS.items()},
})


def rename(path: str) -> str:
    """A core field path in this API's names (``ldap.base_dn`` → ``ldapConfig.baseDn``)."""
    if path.startswith("attribute_mappings"):
        key = path.removeprefix("attribute_mappings").lstrip(".")
        return "attributeMappings" + (f".{_camel(key)}" if key else "")
    path = _RENAME_FIXED(path).replace(".idp_group", ".idpGroup")
    return re.sub(r"^samlConfig\.idpCertificate\[\d+\]", "samlConfig.idpCertificate", path)


def configuration_errors() -> AbstractContextManager[None]:
    """Core errors in this API's field names, the field named at the head of the message."""
    return dialect_errors(rename)


# --- request bodies ---------------------------------------------------------------------------

class _Body(BaseModel):
    """Strict bodies in the API's camelCase wire names."""

    model_config = ConfigDict(extra="forbid", strict=True)


class OidcConfigIn(_Body):
    clientId: str | None = None
    clientSecret: str | None = None
    wellKnownUrl: str | None = None
    redirectUri: str | None = None
    scope: str | None = None
    configName: str | None = None


class SamlConfigIn(_Body):
    idpEntityId: str | None = None
    idpSsoUrl: str | None = None
    idpSloUrl: str | None = None
    idpCertificate: str | None = None
    idpMetadataUrl: str | None = None
    spEntityId: str | None = None
    nameIdFormat: str | None = None
    signRequests: bool | None = None
    forceAuthn: bool | None = None
    spCertificatePem: str | None = None


class LdapConfigIn(_Body):
    serverAddress: str | None = None
    port: int | None = None
    baseDn: str | None = None
    bindDn: str | None = None
    bindPassword: str | None = None
    userSearchBase: str | None = None
    userSearchFilter: str | None = None
    useSsl: bool | None = None


class GroupMappingIn(_Body):
    idpGroup: str
    group: str


ProviderType = Literal["OIDC", "SAML", "LDAP"]
ProtocolName = Literal["oidc", "saml", "ldap"]


class ConfigurationPatch(_Body):
    """PATCH: every field optional; ``tenantUuid`` accepted and ignored."""

    tenantUuid: str | None = None
    displayName: str | None = None
    providerType: ProviderType | None = None
    protocol: ProtocolName | None = None
    oidcConfig: OidcConfigIn | None = None
    samlConfig: SamlConfigIn | None = None
    ldapConfig: LdapConfigIn | None = None
    userProvisioning: Literal["auto", "manual", "disabled"] | None = None
    groupProvisioning: Literal["sync", "none"] | None = None
    attributeMappings: dict[str, str] | None = None
    groupMappings: list[GroupMappingIn] | None = None

    @field_validator("displayName", "providerType", "protocol", "userProvisioning", "groupProvisioning",
                     "attributeMappings", "groupMappings", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value


class ConfigurationBody(ConfigurationPatch):
    """POST and PUT: the page's required fields are required."""

    tenantUuid: str
    displayName: str
    providerType: ProviderType
    protocol: ProtocolName


def _protocol_of(body: ConfigurationPatch) -> Protocol | None:
    if body.providerType is not None and body.protocol is not None and body.providerType.lower() != body.protocol:
        raise InvalidInput(
            f"protocol: {body.protocol!r} does not match providerType {body.providerType!r} "
            f"(expected {body.providerType.lower()!r})", field="protocol",
        )
    named = body.protocol or (body.providerType.lower() if body.providerType else None)
    return Protocol(named) if named else None


def _block_to_core(protocol: Protocol, block: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in block.model_fields_set:
        core, value = KEYS[protocol][key], getattr(block, key)
        if core == "certificates" and value is not None:
            value = [value]
        elif core == "security" and value is not None:
            value = LdapSecurity.LDAPS.value if value else LdapSecurity.NONE.value
        out[core] = value
    return out


def _shape_check(protocol: Protocol, block: dict[str, Any]) -> None:
    """Types and limits of a block that will not be stored; absent required fields are fine."""
    try:
        PROTOCOL_MODELS[protocol].model_validate({k: v for k, v in block.items() if v is not None})
    except ValidationError as exc:
        problems = [{"field": rename(field_path(tuple(e["loc"]), str(protocol))),
                     "message": str(e["msg"]).removeprefix("Value error, ")}
                    for e in exc.errors() if e["type"] != "missing"]
        if problems:
            first = problems[0]
            raise InvalidInput(f"{first['field']}: {first['message']}", field=first["field"],
                               details={"errors": problems}) from None


def _input(
    body: ConfigurationPatch, protocol: Protocol, provider: Provider | None
) -> tuple[ConnectionInput, list[str]]:
    """The core input and the ignored blocks; ``provider`` set means a full replacement (POST/PUT)."""
    full, given = provider is not None, body.model_fields_set
    data: dict[str, Any] = {}
    if full or {"protocol", "providerType"} & given:
        data["protocol"] = protocol
    if "displayName" in given:
        data["display_name"] = data["name"] = body.displayName
    if "userProvisioning" in given or full:
        data["user_provisioning"] = body.userProvisioning or "auto"
    if "groupProvisioning" in given or full:
        data["group_provisioning"] = body.groupProvisioning or "none"
    if body.attributeMappings is not None or full:
        mapped = {}
        for key, attribute in (body.attributeMappings or {}).items():
            if key not in PROFILE_KEYS:
                raise InvalidInput(f"attributeMappings.{key}: is not a profile field (known: "
                                   f"{', '.join(PROFILE_KEYS)})", field=f"attributeMappings.{key}")
            mapped[PROFILE_KEYS[key]] = attribute
        defaults = preset_for(provider).attribute_mappings.get(protocol, {}) if provider is not None else {}
        data["attribute_mappings"] = {**defaults, **mapped}
    if "groupMappings" in given or full:
        data["group_mappings"] = [{"idp_group": m.idpGroup, "group": m.group} for m in body.groupMappings or []]
    ignored = []
    for other, name in BLOCKS.items():
        block = getattr(body, name)
        if block is None:
            continue
        if other is protocol:
            data[str(other)] = _block_to_core(other, block)
        else:
            _shape_check(other, _block_to_core(other, block))
            ignored.append(name)
    if full and str(protocol) not in data:
        raise InvalidInput(f"{BLOCKS[protocol]}: is required when providerType is {str(protocol).upper()}",
                           field=BLOCKS[protocol])
    return parse_model(ConnectionInput, data), ignored


# --- responses ---------------------------------------------------------------------------------

class ConfigurationOut(BaseModel):
    uuid: str
    issuer: str
    displayName: str
    providerType: ProviderType
    protocol: ProtocolName
    oidcConfig: dict[str, Any]
    samlConfig: dict[str, Any]
    ldapConfig: dict[str, Any]
    userProvisioning: str
    groupProvisioning: str
    attributeMappings: dict[str, str]
    groupMappings: list[dict[str, str]]
    createdAt: str
    updatedAt: str


def _issuer(conn: Connection) -> str:
    found = conn.discovered or {}
    if conn.protocol is Protocol.OIDC:
        value = conn.settings.get("issuer") or found.get("issuer")
    elif conn.protocol is Protocol.SAML:
        value = found.get("idp_entity_id") or conn.settings.get("idp_entity_id")
    else:
        value = conn.settings.get("server")
    return str(value or "")


def _block_out(conn: Connection, protocol: Protocol, public_url: str) -> dict[str, Any]:
    if conn.protocol is not protocol:
        return {}
    out: dict[str, Any] = {}
    for key, core in KEYS[protocol].items():
        value = conn.settings.get(core)
        if core in SECRET_FIELDS[str(protocol)]:
            out[f"{key}Set"] = core in conn.secrets
            continue
        if core == "certificates":
            value = value[0] if value else None
        elif core == "security":
            value = value == LdapSecurity.LDAPS.value
        out[key] = value
    if protocol is Protocol.OIDC:
        out["redirectUri"] = connection_urls(public_url, conn)["redirect_uri"]
    elif protocol is Protocol.SAML:
        out["spEntityId"] = sp_entity_id(public_url, conn)
    return out


def configuration_out(conn: Connection, public_url: str) -> dict[str, Any]:
    return {
        "uuid": conn.id, "issuer": _issuer(conn), "displayName": conn.display_name or conn.name,
        "providerType": str(conn.protocol).upper(), "protocol": str(conn.protocol),
        **{name: _block_out(conn, p, public_url) for p, name in BLOCKS.items()},
        "userProvisioning": str(conn.user_provisioning), "groupProvisioning": str(conn.group_provisioning),
        "attributeMappings": {_camel(k): v for k, v in conn.attribute_mappings.items()},
        "groupMappings": [{"idpGroup": m["idp_group"], "group": m["group"]} for m in conn.group_mappings],
        "createdAt": iso(conn.created_at), "updatedAt": iso(conn.updated_at),
    }


# --- routes ------------------------------------------------------------------------------------

def _organization(uow: UnitOfWork, ctx: Context) -> Organization:
    if ctx.principal.organization_id is None:
        raise InvalidInput(
            "Authorization: SSO configurations belong to the calling key's organization (tenantUuid is "
            "ignored); use an organization's API key, not an instance-admin key", field="Authorization",
        )
    return service.organization_for(uow, ctx, ctx.principal.organization_id)


def _answer(response: Response, ignored: list[str]) -> None:
    if ignored:
        response.headers["Keyhall-Ignored-Fields"] = ", ".join(ignored)


@router.get("", response_model=list[ConfigurationOut])
def list_configurations(
    uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, response: Response,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
) -> list[dict[str, Any]]:
    org = _organization(uow, ctx)
    page = service.list_connections(uow, ctx, org.id, limit=limit, cursor=cursor)
    if page.next_cursor:
        response.headers["Link"] = f'<{router.prefix}?limit={limit}&cursor={page.next_cursor}>; rel="next"'
    return [configuration_out(c, runtime.settings.public_url) for c in page.items]


@router.post("", response_model=ConfigurationOut)
def create_configuration(
    body: ConfigurationBody, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, response: Response
) -> dict[str, Any]:
    org = _organization(uow, ctx)
    with configuration_errors():
        protocol = _protocol_of(body)
        assert protocol is not None  # both are required on POST
        data, ignored = _input(body, protocol, Provider.GENERIC)
        conn = service.create_connection(uow, ctx, org.id, data, runtime.inspector)
    _answer(response, ignored)
    return configuration_out(conn, runtime.settings.public_url)


@router.get("/{configuration_uuid}", response_model=ConfigurationOut)
def get_configuration(configuration_uuid: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    org = _organization(uow, ctx)
    return configuration_out(service.get_connection(uow, ctx, org.id, configuration_uuid), runtime.settings.public_url)


@router.put("/{configuration_uuid}", response_model=ConfigurationOut)
def replace_configuration(
    configuration_uuid: str, body: ConfigurationBody, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
    response: Response,
) -> dict[str, Any]:
    org = _organization(uow, ctx)
    existing = service.get_connection(uow, ctx, org.id, configuration_uuid)
    with configuration_errors():
        protocol = _protocol_of(body)
        assert protocol is not None  # both are required on PUT
        data, ignored = _input(body, protocol, existing.provider)
        conn = service.update_connection(uow, ctx, org.id, existing.id, data, runtime.inspector, replace_all=True)
    _answer(response, ignored)
    return configuration_out(conn, runtime.settings.public_url)


@router.patch("/{configuration_uuid}", response_model=ConfigurationOut)
def update_configuration(
    configuration_uuid: str, body: ConfigurationPatch, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
    response: Response,
) -> dict[str, Any]:
    org = _organization(uow, ctx)
    existing = service.get_connection(uow, ctx, org.id, configuration_uuid)
    with configuration_errors():
        protocol = _protocol_of(body) or existing.protocol
        data, ignored = _input(body, protocol, None)
        conn = service.update_connection(uow, ctx, org.id, existing.id, data, runtime.inspector)
    _answer(response, ignored)
    return configuration_out(conn, runtime.settings.public_url)


@router.delete("/{configuration_uuid}", status_code=204)
def delete_configuration(configuration_uuid: str, uow: UowDep, ctx: ContextDep) -> Response:
    org = _organization(uow, ctx)
    with configuration_errors():
        service.delete_connection(uow, ctx, org.id, configuration_uuid)
    return Response(status_code=204)


DIALECT = Dialect("configurations", router)
