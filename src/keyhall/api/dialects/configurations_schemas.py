"""The SSO configurations API's wire shapes: its block and key names, request bodies and responses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, field_validator

from keyhall.api.dialects.common import StrictBody, camel, refuse_null
from keyhall.core.connection_settings import PROFILE_FIELDS
from keyhall.core.vocabulary import Protocol

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


PROFILE_KEYS = {camel(f): f for f in PROFILE_FIELDS}


class OidcConfigIn(StrictBody):
    clientId: str | None = None
    clientSecret: str | None = None
    wellKnownUrl: str | None = None
    redirectUri: str | None = None
    scope: str | None = None
    configName: str | None = None


class SamlConfigIn(StrictBody):
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


class LdapConfigIn(StrictBody):
    serverAddress: str | None = None
    port: int | None = None
    baseDn: str | None = None
    bindDn: str | None = None
    bindPassword: str | None = None
    userSearchBase: str | None = None
    userSearchFilter: str | None = None
    useSsl: bool | None = None


class GroupMappingIn(StrictBody):
    idpGroup: str
    group: str


ProviderType = Literal["OIDC", "SAML", "LDAP"]
ProtocolName = Literal["oidc", "saml", "ldap"]


class ConfigurationPatch(StrictBody):
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

    _not_null = field_validator("displayName", "providerType", "protocol", "userProvisioning", "groupProvisioning",
                                "attributeMappings", "groupMappings", mode="before")(refuse_null)


class ConfigurationBody(ConfigurationPatch):
    """POST and PUT: the page's required fields are required."""

    tenantUuid: str
    displayName: str
    providerType: ProviderType
    protocol: ProtocolName


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
