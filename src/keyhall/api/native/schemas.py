"""The native API's JSON shapes (snake_case) and the functions that render core objects into them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from keyhall.core.api_keys import ApiKey
from keyhall.core.audit import AuditEvent
from keyhall.core.connection_service import public_settings
from keyhall.core.connections import Connection, connection_urls
from keyhall.core.domains import Domain
from keyhall.core.organizations import Organization
from keyhall.core.vocabulary import Role


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrganizationCreate(_In):
    name: str = Field(min_length=1, max_length=255)
    slug: str | None = Field(default=None, min_length=1, max_length=63)


class OrganizationUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    admins_may_configure_sso: bool | None = None
    break_glass_email: EmailStr | None = None
    default_connection_id: str | None = Field(default=None, max_length=36)


class KeyCreate(_In):
    role: Role
    name: str | None = Field(default=None, max_length=128)


class DomainCreate(_In):
    domain: str = Field(min_length=1, max_length=253)


class OrganizationOut(BaseModel):
    id: str
    slug: str
    short_id: str
    name: str
    admins_may_configure_sso: bool
    break_glass_email: str | None
    default_connection_id: str | None
    created_at: str
    updated_at: str


class KeyOut(BaseModel):
    key_id: str
    organization_id: str | None
    role: str | None
    name: str | None
    created_at: str
    revoked_at: str | None


class IssuedKeyOut(KeyOut):
    secret: str
    token: str


class DomainOut(BaseModel):
    id: str
    organization_id: str
    domain: str
    status: str
    verification: dict[str, str]
    last_checked_at: str | None
    last_error: str | None
    verified_at: str | None
    created_at: str


class ConnectionOut(BaseModel):
    id: str
    organization_id: str
    protocol: str
    provider: str
    name: str
    display_name: str | None
    status: str
    domains: list[str]
    contacts: list[str]
    branding: dict[str, Any]
    is_verified: bool
    disable_email_password: bool
    sync_profile: bool
    require_verified_email: bool
    user_provisioning: str
    group_provisioning: str
    attribute_mappings: dict[str, str]
    group_mappings: list[dict[str, str]]
    text_record: str | None
    oidc: dict[str, Any] | None = None
    saml: dict[str, Any] | None = None
    ldap: dict[str, Any] | None = None
    redirect_uri: str | None
    acs_url: str | None
    sp_metadata_url: str | None
    discovered: dict[str, Any] | None
    version: int
    created_at: str
    updated_at: str


class AuditEventOut(BaseModel):
    id: str
    organization_id: str | None
    actor: str
    action: str
    target_type: str
    target_id: str | None
    request_id: str | None
    changes: dict[str, Any]
    created_at: str


T = TypeVar("T")


class ListOut(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


def organization_out(org: Organization) -> dict[str, Any]:
    return {"id": org.id, "slug": org.slug, "short_id": org.short_id, "name": org.name,
            "admins_may_configure_sso": org.admins_may_configure_sso,
            "break_glass_email": org.break_glass_email, "default_connection_id": org.default_connection_id,
            "created_at": iso(org.created_at), "updated_at": iso(org.updated_at)}


def key_out(key: ApiKey) -> dict[str, Any]:
    return {"key_id": key.id, "organization_id": key.organization_id,
            "role": str(key.role) if key.role else ("instance_admin" if key.instance_admin else None),
            "name": key.name, "created_at": iso(key.created_at), "revoked_at": iso(key.revoked_at)}


def domain_out(domain: Domain) -> dict[str, Any]:
    return {"id": domain.id, "organization_id": domain.organization_id, "domain": domain.name,
            "status": str(domain.status),
            "verification": {"type": "TXT", "name": domain.record_name, "value": domain.record_value},
            "last_checked_at": iso(domain.last_checked_at), "last_error": domain.last_error,
            "verified_at": iso(domain.verified_at), "created_at": iso(domain.created_at)}


def connection_out(conn: Connection, public_url: str) -> dict[str, Any]:
    return {
        "id": conn.id, "organization_id": conn.organization_id, "protocol": str(conn.protocol),
        "provider": str(conn.provider), "name": conn.name, "display_name": conn.display_name,
        "status": str(conn.status), "domains": list(conn.domains), "contacts": list(conn.contacts),
        "branding": dict(conn.branding), "is_verified": conn.is_verified,
        "disable_email_password": conn.disable_email_password, "sync_profile": conn.sync_profile,
        "require_verified_email": conn.require_verified_email,
        "user_provisioning": str(conn.user_provisioning), "group_provisioning": str(conn.group_provisioning),
        "attribute_mappings": dict(conn.attribute_mappings), "group_mappings": list(conn.group_mappings),
        "text_record": conn.text_record,
        str(conn.protocol): public_settings(conn),
        **connection_urls(public_url, conn),
        "discovered": conn.discovered, "version": conn.version,
        "created_at": iso(conn.created_at), "updated_at": iso(conn.updated_at),
    }


def audit_out(event: AuditEvent) -> dict[str, Any]:
    return {"id": event.id, "organization_id": event.organization_id, "actor": event.actor,
            "action": event.action, "target_type": event.target_type, "target_id": event.target_id,
            "request_id": event.request_id, "changes": event.changes, "created_at": iso(event.created_at)}
