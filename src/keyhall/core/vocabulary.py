"""The closed vocabularies of the core: protocols, providers, statuses, roles, policies."""

from __future__ import annotations

from enum import StrEnum


class Protocol(StrEnum):
    OIDC = "oidc"
    SAML = "saml"
    LDAP = "ldap"


class Provider(StrEnum):
    """A provider preset: fills defaults (discovery URL, attribute names) for a known IdP."""

    GENERIC = "generic"
    AZURE_AD = "azure_ad"
    GOOGLE_WORKSPACE = "google_workspace"
    OKTA = "okta"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    VIEWER = "viewer"


class UserProvisioning(StrEnum):
    AUTO = "auto"  # just-in-time creation on first login
    MANUAL = "manual"  # only users created beforehand may sign in
    DISABLED = "disabled"  # nobody new; existing links only


class GroupProvisioning(StrEnum):
    SYNC = "sync"  # groups from the IdP replace the user's groups on each login
    NONE = "none"


class LdapSecurity(StrEnum):
    NONE = "none"
    LDAPS = "ldaps"
    STARTTLS = "starttls"


class DomainStatus(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"


SECRET_MASK = "********"
"""What a documented secret field holds in a response; sending it back keeps the stored secret."""
