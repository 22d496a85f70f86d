"""TXT look-ups for domain verification, with dnspython, through a configurable resolver."""

from __future__ import annotations

import dns.exception
import dns.resolver


class TxtResolver:
    """Callable ``name -> [TXT strings]``; raises LookupError with a plain reason when DNS fails.

    ``server`` is ``host:port`` (``KEYHALL_DNS_RESOLVER``); without it the system resolver is used.
    """

    def __init__(self, server: str | None, *, timeout: float = 5.0):
        if server:
            host, _, port = server.rpartition(":") if ":" in server else (server, "", "53")
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [host or server]
            self.resolver.port = int(port or 53)
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.cache = None
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout

    def __call__(self, name: str) -> list[str]:
        try:
            answer = self.resolver.resolve(name, "TXT")
        except dns.resolver.NXDOMAIN:
            return []
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.Timeout:
            raise LookupError(f"DNS timeout looking up {name}") from None
        except dns.resolver.NoNameservers:
            raise LookupError(f"no DNS server answered for {name}") from None
        except dns.exception.DNSException as exc:
            raise LookupError(f"DNS error looking up {name}: {exc.__class__.__name__}") from None
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]
