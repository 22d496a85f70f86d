"""The address of the client behind a request, believing ``X-Forwarded-For`` only from trusted proxies.

Every per-address limit (API calls that do not authenticate, sign-in endpoints, LDAP attempts)
counts by this address, so a header a client can write itself must not choose it. The peer of the
TCP connection is the client unless it is one of ``KEYHALL_TRUSTED_PROXIES`` (IP addresses and
CIDR networks; none by default). When it is, the address is found by the usual right-most
algorithm (as in MDN's ``X-Forwarded-For`` notes and nginx's ``real_ip_recursive``): read the
header's addresses from right to left, skipping those that are themselves trusted proxies; the
first one that is not is the client, because a trusted proxy appended it after seeing it as its
peer. Everything further left was written by someone Keyhall does not trust and is ignored. An
entry that is not an IP address ends the walk at the trusted proxy that wrote it; when every
entry is a trusted proxy, the left-most one is used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: An unknown peer (no socket address, e.g. a Unix socket) is counted under this name.
UNKNOWN = "unknown"


def parse_trusted_proxies(text: str | Iterable[str] | None) -> tuple[IPNetwork, ...]:
    """``"10.0.0.1, 192.168.0.0/16, ::1"`` → networks; ValueError naming a bad entry."""
    if text is None:
        return ()
    parts = text.split(",") if isinstance(text, str) else list(text)
    networks: list[IPNetwork] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {part!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def parse_address(text: str | None) -> IPAddress | None:
    """An IP address from a socket peer or a header entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``,
    ``fe80::1%eth0``), IPv4-mapped IPv6 turned into IPv4; None when it is not one."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.partition(":")[0]
    value = value.partition("%")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address, canonical (``str`` of the parsed address), for a connection from ``peer``
    carrying the ``X-Forwarded-For`` header values ``forwarded_for`` (in the order received)."""
    peer_address = parse_address(peer)
    if peer_address is None:
        return (peer or UNKNOWN).strip().lower()[:64] or UNKNOWN
    if not is_trusted(peer_address, trusted):
        return str(peer_address)
    entries = [entry for value in forwarded_for for entry in value.split(",")]
    current = peer_address
    for entry in reversed(entries):
        hop = parse_address(entry)
        if hop is None:
            return str(current)  # the trusted proxy that wrote this entry is as far as the truth goes
        current = hop
        if not is_trusted(hop, trusted):
            return str(hop)
    return str(current)
