"""TXT look-ups for domain verification, with dnspython, through a configurable resolver.

The answer to "what TXT strings are published at this name?" has three kinds of outcome, and the
domain rules treat them differently, so they stay apart here:

- the strings (one per TXT record; a record split into several character-strings is one value,
  their concatenation without separators, as RFC 7208 §3.3 reads it);
- ``[]``: a definitive "nothing there" — NXDOMAIN, or the name exists with no TXT record (NODATA);
- ``LookupError`` with a plain reason: DNS did not answer the question (timeout, SERVFAIL,
  REFUSED, connection refused, no server configured, a malformed name).
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdtypes.ANY.TXT
import dns.resolver

from keyhall.metrics import idp_call
from keyhall.protocols.dns import parse_server


def txt_value(rdata: dns.rdtypes.ANY.TXT.TXT) -> str:
    """One TXT record as one string: its character-strings concatenated (RFC 7208 §3.3)."""
    return b"".join(rdata.strings).decode("utf-8", "replace")


class TxtResolver:
    """Callable ``name -> [TXT values]``; raises LookupError with a plain reason when DNS fails.

    ``server`` is ``host:port`` (``KEYHALL_DNS_RESOLVER``); without it the system resolver
    (``/etc/resolv.conf``) is used. ``timeout`` bounds the whole look-up, retries included.
    Nothing is cached: a record published a moment ago is seen on the next call.
    """

    def __init__(self, server: str | None, *, timeout: float = 5.0):
        self.timeout = timeout
        self._unusable: str | None = None
        if server:
            self.resolver = dns.resolver.Resolver(configure=False)
            try:
                host, port = parse_server(server)
            except ValueError as exc:  # reported on use, as the reason a check failed
                self._unusable, self.servers = f"KEYHALL_DNS_RESOLVER is unusable: {exc}", "no DNS server"
            else:
                self.resolver.nameservers = [host]
                self.resolver.port = port
                self.servers = f"DNS server [{host}]:{port}" if ":" in host else f"DNS server {host}:{port}"
        else:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.exception.DNSException:
                self.resolver = dns.resolver.Resolver(configure=False)
                self._unusable = "no DNS server is configured (set KEYHALL_DNS_RESOLVER to host:port)"
            self.servers = "the system's DNS servers"
        self.resolver.cache = None
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout

    @idp_call("dns")
    def __call__(self, name: str) -> list[str]:
        if self._unusable:
            raise LookupError(self._unusable)
        try:
            qname = dns.name.from_text(name)
            answer = self.resolver.resolve(qname, "TXT", search=False, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise LookupError(
                f"DNS timeout: no answer from {self.servers} for {name} within {self.timeout:g} s"
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise LookupError(self._no_servers_reason(name, exc)) from None
        except dns.resolver.NoResolverConfiguration:
            raise LookupError("no DNS server is configured (set KEYHALL_DNS_RESOLVER to host:port)") from None
        except dns.name.NameTooLong:
            raise LookupError(f"{name} is too long for a DNS name") from None
        except dns.exception.DNSException as exc:
            raise LookupError(f"DNS error looking up {name}: {exc}") from None
        if answer.rrset is None:
            return []
        return [txt_value(rdata) for rdata in answer.rrset if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)]

    def _no_servers_reason(self, name: str, exc: dns.resolver.NoNameservers) -> str:
        """'answered SERVFAIL', 'answered REFUSED', 'refused the connection', ... per server."""
        reasons: list[str] = []
        for error in exc.kwargs.get("errors") or []:
            problem = error[3] if len(error) > 3 else None
            if isinstance(problem, str):
                reasons.append(f"answered {problem}")
            elif isinstance(problem, ConnectionRefusedError):
                reasons.append("refused the connection")
            elif isinstance(problem, OSError):
                reasons.append(f"could not be reached ({problem.strerror or problem})")
            elif problem is not None:
                reasons.append(f"failed ({problem})")
        said = "; ".join(dict.fromkeys(reasons)) or "did not answer"
        return f"{self.servers} {said} for {name}"
