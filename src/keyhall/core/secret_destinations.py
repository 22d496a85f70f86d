"""Where a connection's stored secrets are sent, and which secrets a change would move. Pure.

A secret follows its endpoint: a client secret stored for one token endpoint, or a bind password
stored for one directory, is never sent anywhere else. ``SECRET_DESTINATIONS`` names, per secret,
the settings that decide where it goes. Endpoints are compared as they take effect: an OIDC
endpoint left unset is the discovered one, so sending back the discovered value is no change;
an LDAP server is its host, port and security however they are spelled (``ldaps://h`` is ``h``
on 636 over LDAPS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from keyhall.core.connection_settings import DISCOVERED_ENDPOINTS, SECRET_DESTINATIONS
from keyhall.core.vocabulary import LdapSecurity, Protocol


def _ldap_destination(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Host, port and security as the LDAP client derives them (``keyhall.idp.ldap_client._target``)."""
    server = str(settings.get("server") or "").strip().rstrip("/")
    try:
        parts = urlsplit(server if "://" in server else f"//{server}")
        host, url_port, scheme = (parts.hostname or server).lower(), parts.port, parts.scheme.lower()
    except ValueError:
        host, url_port, scheme = server.lower(), None, ""
    security = str(settings.get("security") or LdapSecurity.NONE)
    if scheme == "ldaps":
        security = str(LdapSecurity.LDAPS)
    port = settings.get("port") or url_port or (636 if security == LdapSecurity.LDAPS else 389)
    return {"server": host, "port": port, "security": security, "ca_certificate": settings.get("ca_certificate")}


def effective_destination(
    protocol: Protocol, settings: Mapping[str, Any], discovered: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The value in effect of every setting that decides where one of the protocol's secrets goes."""
    if protocol is Protocol.LDAP:
        return _ldap_destination(settings)
    found = discovered or {}
    names = {name for fields in SECRET_DESTINATIONS[protocol].values() for name in fields}
    if protocol is Protocol.OIDC:
        return {name: settings.get(name) or found.get(DISCOVERED_ENDPOINTS[name]) for name in sorted(names)}
    return {name: settings.get(name) for name in sorted(names)}


def moved_secrets(
    protocol: Protocol, before: Mapping[str, Any], after: Mapping[str, Any], discovered: Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """Each secret whose destination differs between the two settings, with the settings that moved it.

    ``discovered`` is what the IdP said while ``before`` was stored; a new issuer or discovery URL
    is itself a move, so the document it leads to needs no comparing.
    """
    was = effective_destination(protocol, before, discovered)
    now = effective_destination(protocol, after, discovered)
    moved: dict[str, list[str]] = {}
    for secret, fields in SECRET_DESTINATIONS[protocol].items():
        changed = [name for name in fields if was.get(name) != now.get(name)]
        if changed:
            moved[secret] = changed
    return moved


def is_discovered_echo(
    protocol: Protocol, name: str, value: Any, stored: Mapping[str, Any], discovered: Mapping[str, Any] | None
) -> bool:
    """True when ``value`` for an unset OIDC endpoint is the discovered one: it is already in effect,
    so sending it back (as responses that show discovered endpoints invite) sets no override."""
    if protocol is not Protocol.OIDC or name not in DISCOVERED_ENDPOINTS or stored.get(name) is not None:
        return False
    found = (discovered or {}).get(DISCOVERED_ENDPOINTS[name])
    return found is not None and value == found
