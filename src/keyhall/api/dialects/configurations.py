"""Dialect `configurations`: ``/api/v1/sso/configurations`` (CreateSSOConfig and the rest of the resource).

An SSO configuration is a Keyhall connection in this API's names; its ``uuid`` is the connection
id. Configurations belong to the calling key's organization: ``tenantUuid`` is required, as the
page says, and ignored (an instance-admin key, which has no organization, gets 400).

- ``providerType`` (OIDC|SAML|LDAP) and ``protocol`` (oidc|saml|ldap) must agree, else 400.
- The block of that protocol (``oidcConfig``/``samlConfig``/``ldapConfig``) is required on POST and PUT and is the one
  stored and checked against the IdP. Blocks of other protocols are checked for shape and limits only, then ignored;
  the response names them in the ``Keyhall-Ignored-Fields`` header (the page's full example sends all three).
- ``displayName`` is both the connection's display name (≤ 64) and its name (unique in the
  organization: a second configuration with the same displayName is 409).
- ``attributeMappings`` maps a profile field (camelCase: ``subject``, ``email``, ``emailVerified``,
  ``givenName``, ``groups``…) to the IdP's attribute or claim name; ``groupMappings`` is a list of
  ``{"idpGroup", "group"}``. ``ldapConfig.useSsl`` true is LDAPS, false plain LDAP.
- PUT replaces: the result is what a POST of the same body would give (absent optional fields take
  their defaults, ``groupProvisioning`` ``none``; attribute mappings start from the provider preset).
  PATCH merges; a config key sent as null is removed. POST/GET/PUT/PATCH answer 200, DELETE 204.
- Responses carry the page's fields plus ``ldapConfig``, the provisioning settings, the
  mappings and ``createdAt``/``updatedAt`` (ISO 8601). Secrets are never returned: the config
  says ``clientSecretSet``/``bindPasswordSet``; blocks of other protocols are ``{}``.
  ``redirectUri`` and ``spEntityId`` are the values in effect (what to register at the IdP).
- Lists are a JSON array, ``limit`` (1-200, default 50) and ``cursor``; a ``Link: <…>; rel="next"``
  header points at the next page. Errors use the native ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.dialects import common
from keyhall.api.dialects import configurations_schemas as wire
from keyhall.api.dialects.common import Dialect, camel, dialect_errors, parse_model
from keyhall.api.dialects.configurations_schemas import BLOCKS, KEYS, PROFILE_KEYS
from keyhall.api.native.schemas import iso
from keyhall.api.responses import json_response
from keyhall.core import connection_service as service
from keyhall.core.connection_service import Context
from keyhall.core.connection_settings import SECRET_FIELDS
from keyhall.core.connections import Connection, ConnectionInput, connection_urls, sp_entity_id
from keyhall.core.organizations import Organization
from keyhall.core.ports import UnitOfWork
from keyhall.core.vocabulary import GroupProvisioning, LdapSecurity, Protocol, Provider
from keyhall.errors import InvalidInput

router = APIRouter(prefix="/api/v1/sso/configurations", tags=["configurations"])

_RENAME_FIXED = common.prefix_renamer({
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
        return "attributeMappings" + (f".{camel(key)}" if key else "")
    path = _RENAME_FIXED(path).replace(".idp_group", ".idpGroup")
    return re.sub(r"^samlConfig\.idpCertificate\[\d+\]", "samlConfig.idpCertificate", path)


def _protocol_of(body: wire.ConfigurationPatch) -> Protocol | None:
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


def _input(body: wire.ConfigurationPatch, protocol: Protocol,
           provider: Provider | None) -> tuple[ConnectionInput, list[str]]:
    """The core input and the ignored blocks; ``provider`` set means a full replacement (POST/PUT)."""
    given = body.model_fields_set
    data: dict[str, Any] = {}
    if provider is not None or {"protocol", "providerType"} & given:
        data["protocol"] = protocol
    if "displayName" in given:
        data["display_name"] = data["name"] = body.displayName
    for key, core in (("userProvisioning", "user_provisioning"), ("groupProvisioning", "group_provisioning")):
        if key in given:
            data[core] = getattr(body, key)
    if body.attributeMappings is not None:
        data["attribute_mappings"] = common.mapping_to_core(body.attributeMappings, PROFILE_KEYS, "attributeMappings")
    if "groupMappings" in given:
        data["group_mappings"] = [{"idp_group": m.idpGroup, "group": m.group} for m in body.groupMappings or []]
    ignored = []
    for other, name in BLOCKS.items():
        block = getattr(body, name)
        if block is None:
            continue
        if other is protocol:
            data[str(other)] = _block_to_core(other, block)
        else:
            common.check_shape(other, _block_to_core(other, block), rename)
            ignored.append(name)
    if provider is not None:
        if str(protocol) not in data:
            raise InvalidInput(f"{BLOCKS[protocol]}: is required when providerType is {str(protocol).upper()}",
                               field=BLOCKS[protocol])
        # The core fills what a replacement leaves out. groupProvisioning "none" is this API's documented
        # default (module docstring; test_put_replaces_the_whole_configuration): seed 003's example always
        # sends the field and names no default, so it is not the core's default ("sync").
        data = service.replacement(data, provider, protocol, group_provisioning=GroupProvisioning.NONE)
    return parse_model(ConnectionInput, data), ignored


def _issuer(conn: Connection) -> str:
    found, settings = conn.discovered or {}, conn.settings
    value = {Protocol.OIDC: settings.get("issuer") or found.get("issuer"),
             Protocol.SAML: found.get("idp_entity_id") or settings.get("idp_entity_id")}
    return str(value.get(conn.protocol, settings.get("server")) or "")


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
        "attributeMappings": {camel(k): v for k, v in conn.attribute_mappings.items()},
        "groupMappings": [{"idpGroup": m["idp_group"], "group": m["group"]} for m in conn.group_mappings],
        "createdAt": iso(conn.created_at), "updatedAt": iso(conn.updated_at),
    }


def _organization(uow: UnitOfWork, ctx: Context) -> Organization:
    return common.key_organization(uow, ctx, "SSO configurations", " (tenantUuid is ignored)")


def _answer(conn: Connection, public_url: str, ignored: list[str]) -> Response:
    """A written configuration, rendered in the handler's thread, naming the fields it ignored."""
    return json_response(wire.ConfigurationOut, configuration_out(conn, public_url),
                         headers={"Keyhall-Ignored-Fields": ", ".join(ignored)} if ignored else None)


@router.get("", response_model=list[wire.ConfigurationOut])
async def list_configurations(
    uow: UowDep, ctx: ContextDep, runtime: RuntimeDep, response: Response,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
) -> list[dict[str, Any]]:
    page = await run_reads(runtime, uow, lambda: service.list_connections(
        uow, ctx, _organization(uow, ctx).id, limit=limit, cursor=cursor))
    if page.next_cursor:
        response.headers["Link"] = f'<{router.prefix}?limit={limit}&cursor={page.next_cursor}>; rel="next"'
    return [configuration_out(c, runtime.settings.public_url) for c in page.items]


@router.post("", response_model=wire.ConfigurationOut)
def create_configuration(body: wire.ConfigurationBody, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    org = _organization(uow, ctx)
    with dialect_errors(rename):
        protocol = _protocol_of(body)
        assert protocol is not None  # both are required on POST
        data, ignored = _input(body, protocol, Provider.GENERIC)
        conn = service.create_connection(uow, ctx, org.id, data, runtime.inspector)
    return _answer(conn, runtime.settings.public_url, ignored)


@router.get("/{configuration_uuid}", response_model=wire.ConfigurationOut)
async def get_configuration(configuration_uuid: str, uow: UowDep, ctx: ContextDep,
                            runtime: RuntimeDep) -> dict[str, Any]:
    conn = await run_reads(runtime, uow, lambda: service.get_connection(uow, ctx, _organization(uow, ctx).id,
                                                                        configuration_uuid))
    return configuration_out(conn, runtime.settings.public_url)


@router.put("/{configuration_uuid}", response_model=wire.ConfigurationOut)
def replace_configuration(
    configuration_uuid: str, body: wire.ConfigurationBody, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
) -> Response:
    org = _organization(uow, ctx)
    existing = service.get_connection(uow, ctx, org.id, configuration_uuid)
    with dialect_errors(rename):
        protocol = _protocol_of(body)
        assert protocol is not None  # both are required on PUT
        data, ignored = _input(body, protocol, existing.provider)
        conn = service.update_connection(uow, ctx, org.id, existing.id, data, runtime.inspector, replace_all=True)
    return _answer(conn, runtime.settings.public_url, ignored)


@router.patch("/{configuration_uuid}", response_model=wire.ConfigurationOut)
def update_configuration(
    configuration_uuid: str, body: wire.ConfigurationPatch, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
) -> Response:
    org = _organization(uow, ctx)
    existing = service.get_connection(uow, ctx, org.id, configuration_uuid)
    with dialect_errors(rename):
        protocol = _protocol_of(body) or existing.protocol
        data, ignored = _input(body, protocol, None)
        conn = service.update_connection(uow, ctx, org.id, existing.id, data, runtime.inspector)
    return _answer(conn, runtime.settings.public_url, ignored)


@router.delete("/{configuration_uuid}", status_code=204)
def delete_configuration(configuration_uuid: str, uow: UowDep, ctx: ContextDep) -> Response:
    with dialect_errors(rename):
        service.delete_connection(uow, ctx, _organization(uow, ctx).id, configuration_uuid)
    return Response(status_code=204)


DIALECT = Dialect("configurations", router)
