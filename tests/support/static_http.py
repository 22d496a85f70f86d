"""A tiny threaded HTTP server on 127.0.0.1 serving fixed answers per path.

Only for negative documents that a real identity provider cannot be made to produce: a
discovery document that is not JSON, a ``jwks_uri`` that answers 404, an oversized body, an
answer that comes too late or drips too slowly, redirect loops. Everything a real IdP can do is
tested against the real one (``tests.support.oidc_idp``).

    def test_x(static_http: StaticHttpServer) -> None:
        static_http.route("/doc", body=b"<html>", content_type="text/html")
        url = static_http.url("/doc")
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Route:
    """One canned answer. ``delay`` waits before the status line; ``drip`` waits between the
    chunks of ``drip_chunks`` pieces of the body (sent without Content-Length)."""

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drip: float = 0.0
    drip_chunks: int = 0


@dataclass
class _State:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection cannot hold a handler thread (and teardown) for long

    def do_GET(self) -> None:
        state = self.server.state
        state.hits.append(self.path)
        route = state.routes.get(self.path.split("?", 1)[0])
        if route is None:
            route = Route(status=404, content_type="text/plain", body=b"not found")
        if route.delay and state.stopping.wait(route.delay):
            return
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        for name, value in route.headers:
            self.send_header(name, value)
        if route.drip_chunks:
            self.send_header("Connection", "close")
            self.end_headers()
            self._drip(route)
            return
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)

    def _drip(self, route: Route) -> None:
        size = max(1, len(route.body) // route.drip_chunks)
        for start in range(0, len(route.body), size):
            self.wfile.write(route.body[start : start + size])
            self.wfile.flush()
            if self.server.state.stopping.wait(route.drip):
                return
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the test's own output."""


class PromptlyClosingHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server whose ``server_close()`` ends every open connection before it joins
    the handler threads: a handler waiting for a keep-alive client's next request (Keyhall's IdP
    client keeps its connections) reads the end at once instead of waiting out its timeout."""

    daemon_threads = False  # server_close() joins the handler threads: no thread outlives a test
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self.open_connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        with self._connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        super().server_close()


class _Server(PromptlyClosingHTTPServer):
    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, size cap) closes its socket; that is expected here."""


class StaticHttpServer:
    """Serves the routes set with ``route()``; ``url(path)`` is its address for a path.

    With ``tls`` (a server-side SSL context) it speaks HTTPS; ``host`` only changes the name
    used in ``base_url`` (the server always listens on 127.0.0.1).
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._state = _State()
        self._server = _Server(self._state)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.base_url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="static-http", daemon=True
        )
        self._thread.start()

    def route(
        self,
        path: str,
        *,
        status: int = 200,
        content_type: str = "application/json",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        drip: float = 0.0,
        drip_chunks: int = 0,
    ) -> str:
        """Set the answer for ``path``; returns the path's URL."""
        self._state.routes[path] = Route(
            status, content_type, body, tuple((headers or {}).items()), delay, drip, drip_chunks
        )
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def hits(self) -> list[str]:
        """Paths requested so far, in order."""
        return list(self._state.hits)

    def stop(self) -> None:
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def static_http() -> Iterator[StaticHttpServer]:
    server = StaticHttpServer()
    try:
        yield server
    finally:
        server.stop()
