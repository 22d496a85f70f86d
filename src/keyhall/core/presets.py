"""Provider presets: what Keyhall knows about well-known IdPs, filled in as defaults.

A preset never overrides what the owner sent; it only fills blanks (discovery issuer, attribute
names those IdPs send) at creation. For the multi-tenant IdPs a preset also pins the organization's
tenant at sign-in (``check_tenant``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keyhall.core.users import LoginRefused
from keyhall.core.vocabulary import Protocol, Provider

_MS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"


@dataclass(frozen=True)
class Preset:
    provider: Provider
    protocols: tuple[Protocol, ...]
    settings: dict[Protocol, dict[str, object]] = field(default_factory=dict)
    attribute_mappings: dict[Protocol, dict[str, str]] = field(default_factory=dict)


OIDC_STANDARD_CLAIMS = {
    "subject": "sub",
    "email": "email",
    "email_verified": "email_verified",
    "name": "name",
    "given_name": "given_name",
    "family_name": "family_name",
    "username": "preferred_username",
    "picture": "picture",
    "locale": "locale",
    "phone_number": "phone_number",
    "groups": "groups",
}

SAML_GENERIC_ATTRIBUTES = {
    "email": "email",
    "name": "name",
    "given_name": "firstName",
    "family_name": "lastName",
    "groups": "groups",
}

LDAP_ATTRIBUTES = {
    "subject": "entryUUID",
    "email": "mail",
    "name": "cn",
    "given_name": "givenName",
    "family_name": "sn",
    "username": "uid",
}

PRESETS: dict[Provider, Preset] = {
    Provider.GENERIC: Preset(
        Provider.GENERIC,
        (Protocol.OIDC, Protocol.SAML, Protocol.LDAP),
        attribute_mappings={
            Protocol.OIDC: OIDC_STANDARD_CLAIMS,
            Protocol.SAML: SAML_GENERIC_ATTRIBUTES,
            Protocol.LDAP: LDAP_ATTRIBUTES,
        },
    ),
    Provider.AZURE_AD: Preset(
        Provider.AZURE_AD,
        (Protocol.SAML, Protocol.OIDC),
        attribute_mappings={
            Protocol.SAML: {
                "email": _MS + "emailaddress",
                "name": "http://schemas.microsoft.com/identity/claims/displayname",
                "given_name": _MS + "givenname",
                "family_name": _MS + "surname",
                "username": _MS + "name",
                "groups": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
            },
            Protocol.OIDC: {**OIDC_STANDARD_CLAIMS, "username": "preferred_username"},
        },
    ),
    Provider.GOOGLE_WORKSPACE: Preset(
        Provider.GOOGLE_WORKSPACE,
        (Protocol.OIDC, Protocol.SAML),
        settings={Protocol.OIDC: {"issuer": "https://accounts.google.com"}},
        attribute_mappings={
            Protocol.OIDC: OIDC_STANDARD_CLAIMS,
            Protocol.SAML: {"email": "email", "given_name": "firstName", "family_name": "lastName",
                            "groups": "groups"},
        },
    ),
    Provider.OKTA: Preset(
        Provider.OKTA,
        (Protocol.OIDC, Protocol.SAML),
        attribute_mappings={
            Protocol.OIDC: OIDC_STANDARD_CLAIMS,
            Protocol.SAML: {"email": "email", "given_name": "firstName", "family_name": "lastName",
                            "name": "displayName", "groups": "groups"},
        },
    ),
}


def preset_for(provider: Provider) -> Preset:
    return PRESETS[provider]


# --- multi-tenant IdPs: pin the organization's own tenant -----------------------------------------

_AZURE_ISSUER = re.compile(
    r"^https://(?:login\.microsoftonline\.com|sts\.windows\.net)/"
    r"(?P<tid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?:/v2\.0)?/?$"
)


def azure_tenant(settings: Mapping[str, Any]) -> str | None:
    """The Entra ID tenant an Azure AD OIDC connection is pinned to: ``oidc.tenant_id``, else the
    tenant named in a single-tenant issuer (``https://login.microsoftonline.com/{tid}/v2.0``).
    None for a multi-tenant issuer (``common``, ``organizations``, ``{tenantid}``) without one."""
    configured = settings.get("tenant_id")
    if configured:
        return str(configured).lower()
    found = _AZURE_ISSUER.match(str(settings.get("issuer") or ""))
    return found.group("tid").lower() if found else None


def check_tenant(provider: Provider, protocol: Protocol, settings: Mapping[str, Any], domains: Sequence[str],
                 claims: Mapping[str, Any]) -> None:
    """Multi-tenant IdPs sign in every account they host, not only the organization's: Google
    Workspace's ``hd`` claim must be one of the connection's domains, and Azure AD's ``tid`` the
    configured tenant. Raises LoginRefused (``tenant_not_configured``, ``tenant_mismatch``)."""
    if protocol is not Protocol.OIDC:
        return
    if provider is Provider.GOOGLE_WORKSPACE:
        if not domains:
            raise LoginRefused("this Google Workspace connection routes no domain, so no Workspace account can "
                               "sign in through it", reason="tenant_not_configured")
        hosted = claims.get("hd")
        if not isinstance(hosted, str) or hosted.lower().rstrip(".") not in {d.lower() for d in domains}:
            raise LoginRefused("your Google account does not belong to this organization's Google Workspace",
                               reason="tenant_mismatch")
    elif provider is Provider.AZURE_AD:
        tenant = azure_tenant(settings)
        if tenant is None:
            raise LoginRefused("this Microsoft Entra ID connection names no tenant (oidc.tenant_id), so no "
                               "account can sign in through it", reason="tenant_not_configured")
        tid = claims.get("tid")
        if not isinstance(tid, str) or tid.lower() != tenant:
            raise LoginRefused("your Microsoft account does not belong to this organization's tenant",
                               reason="tenant_mismatch")
