"""The event loop's twin of ``keyhall.security.guarded_transport``: an httpcore connection pool whose
network backend resolves, vets and connects in one step, for the calls a sign-in makes to its
identity provider while no thread waits on them.

``AsyncGuardedBackend`` hands the host to the same vetting function as ``GuardedBackend`` (resolving a
name blocks, so it runs in a worker thread, once per new connection) and connects to one of exactly
the addresses it returned; TLS SNI, certificate checks and the ``Host`` header still use the URL's
host name. Every read and write of a connection waits at most until the overall deadline of the
request using it (:data:`~keyhall.security.guarded_transport.CALL`, which the event loop keeps per
task). :func:`guarded_pool` makes the pool; ``keyhall.security.outbound_async`` keeps one per event
loop and trust store and sends through it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import anyio.to_thread
import httpcore

from keyhall.errors import OutboundFetchError
from keyhall.security.guarded_transport import (
    CALL,
    IDLE_SECONDS,
    MAX_ADDRESSES_TRIED,
    MAX_CONNECTIONS,
    MAX_IDLE_CONNECTIONS,
    AddressVetter,
    not_connected,
    remaining,
    tls_context,
    why_not_connected,
)


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects in one step, so the checked address is the one used."""

    def __init__(self, vet: AddressVetter) -> None:
        self._vet = vet
        self._sockets = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        field, _deadline = CALL.get()
        addresses = await anyio.to_thread.run_sync(self._vet, host, port, field)  # the resolver blocks
        tried = addresses[:MAX_ADDRESSES_TRIED]
        reason = "no address to try"
        for address in tried:
            try:
                stream = await self._sockets.connect_tcp(
                    address, port, timeout=remaining(timeout), local_address=local_address,
                    socket_options=socket_options)
                return _AsyncDeadlineStream(stream)
            except (httpcore.ConnectTimeout, httpcore.ConnectError) as exc:
                reason = why_not_connected(exc, timeout)
        raise not_connected(host, port, tried, reason, field)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundFetchError("Unix sockets are never used toward identity providers", field=CALL.get()[0])

    async def sleep(self, seconds: float) -> None:
        await self._sockets.sleep(seconds)


class _AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    """Every read and write waits at most until the overall deadline of the request using the
    connection: an IdP that drips its answer byte by byte cannot hold the sign-in past it."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout=remaining(timeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout=remaining(timeout))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        upgraded = await self._stream.start_tls(ssl_context, server_hostname=server_hostname,
                                                timeout=remaining(timeout))
        return _AsyncDeadlineStream(upgraded)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def guarded_pool(vet: AddressVetter, trust_store: tuple[str | None, str | None]) -> httpcore.AsyncConnectionPool:
    """A keep-alive pool (HTTP/1.1, no retries, the trust store's TLS context) connecting through
    :class:`AsyncGuardedBackend`; bounded as the threads' pool is."""
    return httpcore.AsyncConnectionPool(
        ssl_context=tls_context(*trust_store),
        max_connections=MAX_CONNECTIONS,
        max_keepalive_connections=MAX_IDLE_CONNECTIONS,
        keepalive_expiry=IDLE_SECONDS,
        http1=True,
        http2=False,
        retries=0,
        network_backend=AsyncGuardedBackend(vet),
    )
