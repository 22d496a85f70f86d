"""Turning what an IdP sends (OIDC claims, SAML or LDAP attributes) into a Keyhall profile,
through the connection's attribute and group mappings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keyhall.core.connections import Connection
from keyhall.core.users import Profile
from keyhall.core.vocabulary import GroupProvisioning

_TRUE = {"true", "1", "yes"}


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def _text(value: Any) -> str | None:
    value = _first(value)
    if value is None:
        return None
    text = str(value).strip()
    return text[:512] or None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [str(v).strip()[:256] for v in items if str(v).strip()][:500]


def map_profile(connection: Connection, attributes: Mapping[str, Any], *, subject: str) -> Profile:
    """Read the mapped attributes; ``subject`` is the IdP's stable id (``sub``, NameID, entryUUID)."""
    mapping = connection.attribute_mappings

    def read(field: str, default: str | None = None) -> Any:
        source = mapping.get(field, default)
        return attributes.get(source) if source else None

    verified_raw = _first(read("email_verified", "email_verified"))
    email = _text(read("email", "email"))
    return Profile(
        subject=subject,
        email=email.lower() if email else None,
        email_verified=verified_raw is True or str(verified_raw).lower() in _TRUE,
        name=_text(read("name", "name")),
        given_name=_text(read("given_name", "given_name")),
        family_name=_text(read("family_name", "family_name")),
        username=_text(read("username")),
        picture=_text(read("picture")),
        locale=_text(read("locale")),
        phone_number=_text(read("phone_number")),
        groups=_strings(read("groups", "groups")),
    )


def map_groups(connection: Connection, idp_groups: Sequence[str]) -> list[str] | None:
    """The groups to store: None leaves them untouched (provisioning off); with mappings only the
    mapped groups pass, renamed; without mappings the IdP's groups pass as they are."""
    if connection.group_provisioning is GroupProvisioning.NONE:
        return None
    if not connection.group_mappings:
        return sorted(set(idp_groups))
    names = set(idp_groups)
    return sorted({m["group"] for m in connection.group_mappings if m["idp_group"] in names})
