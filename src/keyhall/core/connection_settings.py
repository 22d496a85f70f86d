"""The shape and limits of an SSO connection's settings.

These models hold every field the five seed APIs name, with their limits, so that each dialect
only renames fields. Protocol settings are validated after a partial update is merged in, so the
rules always hold for the whole stored object. Secrets (``client_secret``, ``bind_password``,
``sp_private_key``) travel in the same models but are stored apart, encrypted, and never rendered.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

from keyhall.core.vocabulary import LdapSecurity

URL_MAX = 2048


def _check_http_url(value: str) -> str:
    if any(ch.isspace() for ch in value):
        raise ValueError("must be a URL without spaces")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    return value


HttpURL = Annotated[str, StringConstraints(min_length=1, max_length=URL_MAX), AfterValidator(_check_http_url)]

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")


def normalize_domain(value: str) -> str:
    text = value.strip().lower().rstrip(".")
    if text.startswith("@"):
        text = text[1:]
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("is not a valid domain name") from exc
    if not _DOMAIN.match(text):
        raise ValueError("is not a valid domain name (e.g. example.com)")
    return text


DomainName = Annotated[str, AfterValidator(normalize_domain)]

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255)]


def _check_pem_certificate(value: str) -> str:
    text = value.strip()
    if "PRIVATE KEY" in text:
        raise ValueError("must be a certificate, not a private key")
    return text


CertificateText = Annotated[
    str, StringConstraints(min_length=1, max_length=16384), AfterValidator(_check_pem_certificate)
]


def _check_private_key(value: str) -> str:
    if "PRIVATE KEY" not in value:
        raise ValueError("must be a PEM private key")
    return value.strip()


def _check_scope(value: str) -> str:
    tokens = value.split()
    if not tokens or any(not re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", t) for t in tokens):
        raise ValueError("must be space-separated scope tokens (RFC 6749 §3.3)")
    if "openid" not in tokens:
        raise ValueError("must include 'openid'")
    return " ".join(dict.fromkeys(tokens))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


_GUID = r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"


class OidcSettings(_Strict):
    """OpenID Connect relying-party settings toward the organization's IdP."""

    client_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    issuer: HttpURL | None = None
    discovery_url: HttpURL | None = None
    authorization_url: HttpURL | None = None
    token_url: HttpURL | None = None
    userinfo_url: HttpURL | None = None
    jwks_url: HttpURL | None = None
    scope: Annotated[str, StringConstraints(max_length=1024), AfterValidator(_check_scope)] = "openid profile email"
    redirect_uri: HttpURL | None = None
    config_name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    token_endpoint_auth_method: (
        Annotated[str, Field(pattern=r"^(client_secret_basic|client_secret_post|none)$")] | None
    ) = None
    fetch_userinfo: bool = True
    # Azure AD (Entra ID): the tenant whose accounts may sign in (the ID token's ``tid``); derived
    # from a single-tenant issuer when not given. See ``presets.check_tenant``.
    tenant_id: Annotated[str, StringConstraints(pattern=_GUID)] | None = None


NAME_ID_FORMATS = (
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:entity",
)
_NAME_ID_PATTERN = "^(" + "|".join(re.escape(f) for f in NAME_ID_FORMATS) + ")$"


class SamlSettings(_Strict):
    """SAML 2.0 service-provider settings toward the organization's IdP."""

    idp_entity_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    sso_url: HttpURL | None = None
    slo_url: HttpURL | None = None
    certificates: Annotated[list[CertificateText], Field(max_length=5)] = []
    metadata_url: HttpURL | None = None
    metadata_xml: Annotated[str, StringConstraints(min_length=1, max_length=1_048_576)] | None = None
    sp_entity_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    name_id_format: Annotated[str, Field(pattern=_NAME_ID_PATTERN)] = NAME_ID_FORMATS[0]
    sign_requests: bool = False
    force_authn: bool = False
    sp_certificate: CertificateText | None = None
    sp_private_key: Annotated[str, StringConstraints(max_length=16384), AfterValidator(_check_private_key)] | None = (
        None
    )
    allow_idp_initiated: bool = False
    idp_initiated_client_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    idp_initiated_redirect_uri: HttpURL | None = None
    allow_sha1: bool = False
    # Signing certificates that appear in the metadata at metadata_url are trusted beside the others.
    auto_update_certificates: bool = True

    @model_validator(mode="after")
    def _idp_initiated_needs_a_destination(self) -> SamlSettings:
        if self.allow_idp_initiated and not (self.idp_initiated_client_id and self.idp_initiated_redirect_uri):
            raise ValueError("allow_idp_initiated needs idp_initiated_client_id and idp_initiated_redirect_uri "
                             "(the application and redirect URI that receive IdP-initiated sign-ins)")
        return self


def _check_ldap_filter(value: str) -> str:
    if "%s" not in value and "{username}" not in value:
        raise ValueError("must contain the placeholder %s or {username}")
    if value.count("(") != value.count(")") or not value.startswith("("):
        raise ValueError("must be an LDAP filter in parentheses (RFC 4515)")
    return value


def _check_ldap_server(value: str) -> str:
    text = value.strip()
    host = text.split("://", 1)[1] if "://" in text else text
    if "://" in text and not text.lower().startswith(("ldap://", "ldaps://")):
        raise ValueError("must be a host name or an ldap:// / ldaps:// URL")
    if not host or any(ch.isspace() or ch in "/?#@" for ch in host.rstrip("/")):
        raise ValueError("must be a host name, an address, or an ldap:// / ldaps:// URL")
    return text


DistinguishedName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class LdapSettings(_Strict):
    """LDAP directory settings: the service account searches, the user binds."""

    server: Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_check_ldap_server)]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: LdapSecurity = LdapSecurity.NONE
    ca_certificate: CertificateText | None = None
    base_dn: DistinguishedName
    bind_dn: DistinguishedName | None = None
    bind_password: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    user_search_base: DistinguishedName | None = None
    user_search_filter: Annotated[
        str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_check_ldap_filter)
    ] = "(uid=%s)"
    group_search_base: DistinguishedName | None = None
    group_search_filter: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    group_member_attribute: Annotated[str, StringConstraints(min_length=1, max_length=128)] = "memberOf"
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 636 if self.security is LdapSecurity.LDAPS else 389


PROTOCOL_MODELS: dict[str, type[_Strict]] = {"oidc": OidcSettings, "saml": SamlSettings, "ldap": LdapSettings}

SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "oidc": ("client_secret",),
    "saml": ("sp_private_key",),
    "ldap": ("bind_password",),
}

IDENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "oidc": ("issuer", "discovery_url", "client_id", "authorization_url", "token_url", "jwks_url", "tenant_id"),
    "saml": ("idp_entity_id", "sso_url", "certificates", "metadata_url", "metadata_xml"),
    "ldap": ("server", "port", "security", "base_dn", "user_search_base"),
}
"""Changing any of these changes which IdP the connection trusts: ``is_verified`` resets."""

INSPECTION_FIELDS: dict[str, tuple[str, ...]] = {
    "oidc": ("issuer", "discovery_url", "jwks_url"),
    "saml": ("idp_entity_id", "sso_url", "slo_url", "certificates", "metadata_url", "metadata_xml"),
    "ldap": ("server", "port", "security", "ca_certificate", "base_dn", "bind_dn", "bind_password",
             "user_search_base", "user_search_filter", "group_search_base", "group_search_filter"),
}
"""Changing any of these makes Keyhall contact the IdP again before storing."""

PROFILE_FIELDS = (
    "subject",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "username",
    "picture",
    "locale",
    "phone_number",
    "groups",
)

AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Branding(_Strict):
    display_name: Annotated[str, StringConstraints(max_length=64)] | None = None
    logo: HttpURL | None = None
    dark_logo: HttpURL | None = None


class GroupMapping(_Strict):
    idp_group: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    group: Annotated[str, StringConstraints(min_length=1, max_length=256)]


Contacts = Annotated[list[EmailStr], Field(min_length=1, max_length=10)]


def settings_dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")

SECRET_DESTINATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    # The client secret goes to the token endpoint, which the issuer's discovery document (or an
    # explicit token_url) names; the tokens it buys go to the userinfo endpoint. The authorization
    # endpoint only ever sees the browser with public parameters, and the JWKS is fetched without
    # credentials: changing those resets is_verified (IDENTITY_FIELDS) but moves no secret.
    "oidc": {"client_secret": ("issuer", "discovery_url", "token_url", "userinfo_url")},
    # sp_private_key is Keyhall's own key: it signs and decrypts here and is never sent anywhere.
    "saml": {},
    # The bind password goes to the directory at server/port over security; ca_certificate decides
    # which peer TLS accepts as that directory, so replacing it can hand the password to another.
    "ldap": {"bind_password": ("server", "port", "security", "ca_certificate")},
}
"""Per protocol, each secret and the settings that decide where it is sent. Changing where a
secret would go clears it unless the same request sends it again (``keyhall.core.secret_destinations``)."""

DISCOVERED_ENDPOINTS: dict[str, str] = {
    "issuer": "issuer", "discovery_url": "discovery_url", "authorization_url": "authorization_endpoint",
    "token_url": "token_endpoint", "userinfo_url": "userinfo_endpoint", "jwks_url": "jwks_uri",
}
"""OIDC settings that, when not set, take effect from the discovered document (its member names)."""
