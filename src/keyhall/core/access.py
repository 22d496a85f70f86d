"""Who is calling, and what they may do.

A principal is an API key's holder: an organization member with a role, or an instance admin.
Another organization's resources are reported as absent (404), never as forbidden, so a key
cannot learn which ids exist elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyhall.core.organizations import Organization
from keyhall.core.vocabulary import Role
from keyhall.errors import NotFound, PermissionDenied


@dataclass(frozen=True)
class Principal:
    key_id: str
    organization_id: str | None  # None for instance-admin keys
    role: Role | None
    instance_admin: bool = False
    acting_as: str | None = None  # the audit actor when not an API key (a portal link: ``portal-link:<id>``)

    @property
    def actor(self) -> str:
        return self.acting_as or f"key:{self.key_id}"


SYSTEM = Principal(key_id="system", organization_id=None, role=None, instance_admin=True)
"""The command line and background jobs act as this principal."""


def require_instance_admin(principal: Principal) -> None:
    if not principal.instance_admin:
        raise PermissionDenied("this needs an instance-admin key")


def require_member(principal: Principal, organization: Organization | None, what: str = "organization") -> Organization:
    """The organization, if the principal may see it; otherwise NotFound."""
    if organization is None or not (principal.instance_admin or principal.organization_id == organization.id):
        raise NotFound(f"{what} not found")
    return organization


def can_write_sso(principal: Principal, organization: Organization) -> bool:
    if principal.instance_admin:
        return True
    if principal.role is Role.OWNER:
        return True
    return principal.role is Role.ADMIN and organization.admins_may_configure_sso


def require_sso_writer(principal: Principal, organization: Organization) -> None:
    if not can_write_sso(principal, organization):
        needed = "owner or admin" if organization.admins_may_configure_sso else "owner"
        raise PermissionDenied(f"changing SSO configuration needs the {needed} role")


def require_owner(principal: Principal, organization: Organization) -> None:
    if not (principal.instance_admin or principal.role is Role.OWNER):
        raise PermissionDenied("this needs the owner role")
