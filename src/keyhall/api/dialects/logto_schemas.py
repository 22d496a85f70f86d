"""Logto's wire shapes: the connector providers it names, its config keys, request bodies and responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, StringConstraints, field_validator

from keyhall.api.dialects.common import StrictBody, camel, refuse_null
from keyhall.core.connection_settings import PROFILE_FIELDS
from keyhall.core.vocabulary import Protocol, Provider


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
BRANDING = (("displayName", "display_name"), ("logo", "logo"), ("darkLogo", "dark_logo"))


ATTRIBUTE_KEYS = {("id" if f == "subject" else camel(f)): f for f in PROFILE_FIELDS}
ATTRIBUTE_NAMES = {core: logto for logto, core in ATTRIBUTE_KEYS.items()}


# --- request bodies ---------------------------------------------------------------------------

ConnectorName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class BrandingIn(StrictBody):
    displayName: str | None = None
    logo: str | None = None
    darkLogo: str | None = None


class ConnectorPatch(StrictBody):
    """``PATCH /api/sso-connectors/{id}``: every field optional; ``branding: null`` clears it."""

    config: dict[str, Any] | None = None
    domains: list[str] | None = None
    branding: BrandingIn | None = None
    syncProfile: bool | None = None
    connectorName: ConnectorName | None = None

    _not_null = field_validator("config", "domains", "syncProfile", "connectorName", "providerName",
                                mode="before", check_fields=False)(refuse_null)


class ConnectorCreate(ConnectorPatch):
    providerName: ProviderName
    connectorName: ConnectorName


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
