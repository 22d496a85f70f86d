"""Provider presets: what Keyhall knows about well-known IdPs, filled in as defaults.

A preset never overrides what the owner sent; it only fills blanks (discovery issuer, attribute
names those IdPs send) at creation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
