"""Turning what an IdP sends (OIDC claims, SAML or LDAP attributes) into a Keyhall profile,
through the connection's attribute and group mappings."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from keyhall.core.connection_settings import normalize_domain
from keyhall.core.connections import Connection
from keyhall.core.users import LoginRefused, Profile
from keyhall.core.vocabulary import GroupProvisioning

_TRUE = {"true", "1", "yes"}


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


_LIMITS = {"email": 320, "locale": 64, "phone_number": 64}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SUBJECT_MAX = 255


def _text(value: Any, limit: int = 512) -> str | None:
    """One clean line of text: control characters (NUL included) removed, cut to the stored length."""
    value = _first(value)
    if value is None:
        return None
    text = _CONTROL.sub("", str(value)).strip()
    return text[:limit] or None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    cleaned = (_CONTROL.sub("", str(v)).strip()[:256] for v in items)
    return [v for v in cleaned if v][:500]


def map_profile(connection: Connection, attributes: Mapping[str, Any], *, subject: str) -> Profile:
    """Read the mapped attributes; ``subject`` is the IdP's stable id (``sub``, NameID, entryUUID)."""
    mapping = connection.attribute_mappings

    def read(field: str, default: str | None = None) -> Any:
        source = mapping.get(field, default)
        return attributes.get(source) if source else None

    if not subject or len(subject) > SUBJECT_MAX or _CONTROL.search(subject):
        raise LoginRefused("Your identity provider sent an identifier Keyhall cannot store.",
                           reason="invalid_subject")
    verified_raw = _first(read("email_verified", "email_verified"))
    email = _text(read("email", "email"), _LIMITS["email"])
    if email and ("@" not in email or " " in email):
        email = None  # not an address: never route or match on it
    return Profile(
        subject=subject,
        email=email.lower() if email else None,
        email_verified=verified_raw is True or str(verified_raw).lower() in _TRUE,
        name=_text(read("name", "name")),
        given_name=_text(read("given_name", "given_name")),
        family_name=_text(read("family_name", "family_name")),
        username=_text(read("username")),
        picture=_text(read("picture")),
        locale=_text(read("locale"), _LIMITS["locale"]),
        phone_number=_text(read("phone_number"), _LIMITS["phone_number"]),
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


def email_verdict(profile: Profile, *, idp_vouched: bool, verified_domains: Collection[str]) -> bool:
    """Whether Keyhall vouches for ``profile.email`` (the ID token's ``email_verified``).

    Two proofs are needed, and neither is enough alone:

    - the IdP vouched for the address: OIDC's ``email_verified`` claim, or for SAML and LDAP the
      organization's own directory asserting it (``idp_vouched``);
    - the address's domain is DNS-verified by the connection's own organization
      (``verified_domains``: the names that organization has proven). A domain merely listed on a
      connection, or verified by another organization, proves nothing; nor does
      ``KEYHALL_ALLOW_UNVERIFIED_DOMAINS``, which only changes routing in development.
    """
    if not idp_vouched or not profile.email:
        return False
    local, _, domain = profile.email.rpartition("@")
    name = email_domain_name(domain)
    return bool(local and name) and name in {email_domain_name(d) for d in verified_domains}


def email_domain_name(domain: str) -> str | None:
    """An address's domain as claims store it (lower case, IDNA): None when it is no domain name."""
    try:
        return normalize_domain(domain)
    except ValueError:
        return None
