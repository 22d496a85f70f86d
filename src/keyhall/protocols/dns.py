"""DNS resolver addresses, parsed: pure (no I/O), so settings can check one at load time."""

from __future__ import annotations

import ipaddress


def parse_server(value: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare IP address, as ``(ip, port)``; port 53 by default.

    The host must be an IP address: the resolver that resolves names cannot need one itself.
    """
    text = value.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"DNS resolver {value!r}: expected [IPv6]:port")
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"DNS resolver {value!r}: the host must be an IP address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"DNS resolver {value!r}: the port must be a number from 1 to 65535")
    return address, int(port)
