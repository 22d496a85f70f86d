"""The socket half of ``keyhall.security.outbound``: an httpx transport that connects only to
addresses vetted at connect time.

``GuardedBackend`` is an httpcore network backend that resolves the host, hands the addresses to
a vetting function (``outbound`` supplies one that applies ``OutboundPolicy``) and connects to
one of exactly those addresses, in one step; so a DNS answer that changes between the check and
the connection (DNS rebinding) gains nothing. ``GuardedTransport`` is an httpx transport over an
httpcore connection pool built on that backend: TLS SNI, certificate checks and the ``Host``
header still use the URL's host name, because httpcore derives them from the request, not from
the address connected to.

The pool is long-lived and keeps connections alive between requests (one per ``OutboundPolicy``):
each request states its own ``field`` and overall deadline in :data:`CALL`, which the backend reads
when it connects and every stream reads at each read and write; a connection is vetted when it is
opened, and a reused one goes to the address vetted then.

Which addresses are acceptable is decided in ``outbound``, not here. httpcore's exceptions are
left as they are (``outbound`` turns them into OutboundFetchError); connecting fails with an
OutboundFetchError whose message says why each address could not be reached.
"""

from __future__ import annotations

import errno
import functools
import os
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

from keyhall.errors import OutboundFetchError

#: At most this many of a host's addresses are tried in turn when connecting.
MAX_ADDRESSES_TRIED = 4

#: ``(host, port, field)`` → the addresses that may be connected to, in order; raises to refuse them all.
AddressVetter = Callable[[str, int, "str | None"], list[str]]

#: The request in progress in this context: the setting it is about (for errors) and its overall
#: deadline (``time.monotonic()``), or None. Set by ``outbound`` around each request.
CALL: ContextVar[tuple[str | None, float | None]] = ContextVar("keyhall_outbound_call", default=(None, None))

#: The shared pool's bounds: connections in all (the bulkhead bounds them per origin first), idle
#: ones kept, and how long an idle one is kept.
MAX_CONNECTIONS = 64
MAX_IDLE_CONNECTIONS = 16
IDLE_SECONDS = 30.0


def host_and_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_os_error(exc: BaseException | None) -> str:
    """A connection failure in words a person can act on (``connection refused``, TLS problems, ...)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.errno in {errno.ENETUNREACH, errno.EHOSTUNREACH}:
        return "network unreachable" if exc.errno == errno.ENETUNREACH else "host unreachable"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def why_not_connected(exc: httpcore.ConnectTimeout | httpcore.ConnectError, timeout: float | None) -> str:
    """Why one address could not be connected to, in words."""
    if isinstance(exc, httpcore.ConnectTimeout):
        return f"timed out after {timeout:g} s" if timeout is not None else "timed out"
    cause = exc.__cause__ or exc
    # anyio (the event loop's sockets) says "All connection attempts failed", caused by the real error
    return describe_os_error(cause.__cause__ if isinstance(cause.__cause__, OSError) else cause)


def not_connected(host: str, port: int, tried: list[str], reason: str, field: str | None) -> OutboundFetchError:
    """The error when none of the ``tried`` addresses of ``host`` took the connection (``reason``: the last's)."""
    # The addresses the name resolved to stay unsaid: a message must not map the resolver's view.
    via = "" if tried == [host] or len(tried) < 2 else f" ({len(tried)} addresses tried)"
    message = f"could not connect to {host_and_port(host, port)}{via}: {reason}"
    return OutboundFetchError(message, field=field, details={"host": host, "port": port})


def remaining(timeout: float | None) -> float | None:
    """``timeout``, cut to what is left of the overall deadline of the request in progress
    (:data:`CALL`); raises ``httpcore.ReadTimeout`` once that deadline has passed."""
    deadline = CALL.get()[1]
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the overall deadline toward the identity provider has passed")
    return left if timeout is None else min(timeout, left)


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks and connects in one step, so the checked address is the one used.

    ``vet`` resolves and judges a host's addresses; the request's ``field`` (from :data:`CALL`) names
    the setting a failure is about (e.g. ``oidc.jwks_uri``), for the error's ``field``.
    """

    def __init__(self, vet: AddressVetter) -> None:
        self._vet = vet
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        field, _deadline = CALL.get()
        tried = self._vet(host, port, field)[:MAX_ADDRESSES_TRIED]
        reason = "no address to try"
        for address in tried:
            try:
                stream = self._sockets.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
                return _DeadlineStream(stream)
            except (httpcore.ConnectTimeout, httpcore.ConnectError) as exc:
                reason = why_not_connected(exc, timeout)
        raise not_connected(host, port, tried, reason, field)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise OutboundFetchError("Unix sockets are never used toward identity providers", field=CALL.get()[0])


class _DeadlineStream(httpcore.NetworkStream):
    """Every read and write waits at most until the overall deadline of the request using the
    connection (:data:`CALL`): an IdP that drips its status line or headers byte by byte cannot hold
    a worker past it."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout=remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout=remaining(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        upgraded = self._stream.start_tls(ssl_context, server_hostname=server_hostname, timeout=remaining(timeout))
        return _DeadlineStream(upgraded)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CoreResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if callable(close):
            close()


@functools.lru_cache(maxsize=4)
def tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """One verifying TLS context per trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR``): building it
    loads the CA store (tens of milliseconds), and a context is safe to share between threads."""
    return ssl.create_default_context()


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool that connects through ``GuardedBackend``.

    HTTP/1.1 only, no retries, the system's default TLS trust. httpcore exceptions are left as
    they are; ``outbound`` turns them into OutboundFetchError.
    """

    def __init__(self, backend: GuardedBackend, trust_store: tuple[str | None, str | None] | None = None) -> None:
        """``trust_store``: ``(SSL_CERT_FILE, SSL_CERT_DIR)``, by default as the environment says now."""
        cert_file, cert_dir = trust_store or (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls_context(cert_file, cert_dir),
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_IDLE_CONNECTIONS,
            keepalive_expiry=IDLE_SECONDS,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        core_response = self._pool.handle_request(core_request)
        assert isinstance(core_response.stream, Iterable)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_CoreResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
