"""A real DNS server for the tests: pip ``dnslib``, in process, on 127.0.0.1, UDP and TCP.

``DnsServer.start()`` binds UDP on a free port (port 0) and TCP on the same port, and answers
from a table that tests change while it runs:

- ``publish_txt(name, *values)``: the TXT records at ``name`` (replacing any there). A value is a
  string, or a tuple of strings for one record split into several character-strings (RFC 1035
  §3.3.14; such a record means their concatenation, RFC 7208 §3.3).
- ``remove(name)``: no records at ``name`` any more (NOERROR with an empty answer, "NODATA").
- ``nxdomain_zone(zone)``: names at or under ``zone`` that hold no records answer NXDOMAIN.
- ``servfail(name)``: ``name`` answers SERVFAIL (the authoritative side is broken).
- ``stop()``: closes both sockets; the port then refuses (the "server down" case).
  ``closed_address()`` gives such an address without running a server at all.

Everything else answers NOERROR with an empty answer, as an authoritative server does for a name
that exists with no TXT record. ``queries`` lists the ``(name, type)`` asked, for assertions.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, TXT, DNSLabel  # type: ignore[import-untyped]
from dnslib.server import DNSLogger, DNSServer  # type: ignore[import-untyped]

TxtValue = str | tuple[str, ...]


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    """dnslib prints every query by default; the tests want a clean output."""

    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error", prefix=False)


class _Zone:
    """The records the server answers from; changed by tests while the server threads read it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.txt: dict[str, list[tuple[str, ...]]] = {}
        self.nxdomain_zones: set[str] = set()
        self.servfail_names: set[str] = set()
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        del handler
        reply = request.reply()
        qname = str(request.q.qname)
        name = _key(qname)
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((name, qtype))
            if name in self.servfail_names:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            records = list(self.txt.get(name, []))
            missing = not records and any(_within(name, zone) for zone in self.nxdomain_zones)
        if missing:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if qtype in ("TXT", "ANY"):
            for strings in records:
                data = TXT([s.encode("utf-8") for s in strings])
                reply.add_answer(RR(DNSLabel(qname), QTYPE.TXT, rdata=data, ttl=0))
        return reply


class DnsServer:
    def __init__(self) -> None:
        self._zone = _Zone()
        self._servers: list[Any] = []
        self.port = 0

    @property
    def address(self) -> str:
        """``host:port``, the form ``KEYHALL_DNS_RESOLVER`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str]]:
        with self._zone.lock:
            return list(self._zone.queries)

    def start(self) -> DnsServer:
        for _ in range(20):  # the UDP port is free; the same TCP port almost always is too
            udp = DNSServer(self._zone, address="127.0.0.1", port=0, logger=_QuietLogger())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self._zone, address="127.0.0.1", port=port, tcp=True, logger=_QuietLogger())
            except OSError:
                udp.server.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            for server in self._servers:  # a short poll interval makes stop() quick
                server.thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05},
                                                 name=f"dns-server-{port}", daemon=True)
                server.thread.start()
            return self
        raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")

    def stop(self) -> None:
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
            server.thread.join(timeout=5)
        self._servers = []

    def publish_txt(self, name: str, *values: TxtValue) -> None:
        records = [(v,) if isinstance(v, str) else tuple(v) for v in values]
        with self._zone.lock:
            self._zone.txt[_key(name)] = records

    def remove(self, name: str) -> None:
        with self._zone.lock:
            self._zone.txt.pop(_key(name), None)

    def nxdomain_zone(self, *zones: str) -> None:
        with self._zone.lock:
            self._zone.nxdomain_zones.update(_key(z) for z in zones)

    def servfail(self, name: str, *, on: bool = True) -> None:
        with self._zone.lock:
            if on:
                self._zone.servfail_names.add(_key(name))
            else:
                self._zone.servfail_names.discard(_key(name))


def closed_address() -> str:
    """``127.0.0.1:PORT`` where nothing listens (UDP or TCP): a DNS server that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()
