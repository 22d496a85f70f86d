"""A product's logout endpoints on a real HTTP server on 127.0.0.1: its back-channel logout
endpoint (OpenID Connect Back-Channel Logout 1.0 §2.5) keeps every ``logout_token`` POSTed to it,
and answers 500 to the next ``fail_next`` requests, as a product that is down would; its
signed-out page (``signed_out_url``, a post-logout redirect URI) records every URL a browser brings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class LogoutReceiver:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/backchannel-logout"
        self.signed_out_url = f"http://127.0.0.1:{server.server_address[1]}/signed-out"
        self.signed_out_visits: list[str] = []  # path and query of each GET
        self.received: list[str] = []  # logout tokens answered 200
        self.refused: list[str] = []  # logout tokens answered 500
        self.content_types: list[str] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def take(self) -> list[str]:
        with self.lock:
            taken, self.received = self.received, []
            return taken


def _handler(receiver: list[LogoutReceiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            this = receiver[0]
            body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
            token = parse_qs(body).get("logout_token", [""])[0]
            with this.lock:
                this.content_types.append(self.headers.get("content-type", ""))
                failing = this.fail_next > 0
                if failing:
                    this.fail_next -= 1
                    this.refused.append(token)
                else:
                    this.received.append(token)
            self.send_response(500 if failing else 200)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            this = receiver[0]
            with this.lock:
                this.signed_out_visits.append(self.path)
            body = b"<!doctype html><html lang=en><title>Product</title><p>Goodbye</p></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def logout_receiver() -> Iterator[LogoutReceiver]:
    holder: list[LogoutReceiver] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    holder.append(LogoutReceiver(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
