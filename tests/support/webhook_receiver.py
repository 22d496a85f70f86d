"""A webhook receiver on 127.0.0.1 for tests: it verifies every delivery with the Standard Webhooks
reference library (``standardwebhooks``), and answers as each endpoint path is told to (200, a
planned series of 500s, a stall past the sender's timeout)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified_by: list[str]  # the registered secrets whose signature the message carries
    answered: int | str  # the status sent back, or "stalled"

    @property
    def payload(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


@dataclass
class WebhookReceiver:
    port: int = 0
    secrets: dict[str, list[str]] = field(default_factory=dict)  # path -> secrets to verify with
    plans: dict[str, list[int | str]] = field(default_factory=dict)  # path -> answers to give first
    received: list[Received] = field(default_factory=list)
    stall_seconds: float = 2.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def for_path(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def delivered(self, path: str) -> list[Received]:
        """Verified messages that were answered 200."""
        return [r for r in self.for_path(path) if r.answered == 200 and r.verified_by]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int | str:
        verified_by = []
        for secret in self.secrets.get(path, []):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified_by.append(secret)
        with self.lock:
            plan = self.plans.get(path) or []
            answer: int | str = plan.pop(0) if plan else (200 if verified_by else 400)
            self.received.append(Received(path, headers, body, verified_by, answer))
        return answer


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            answer = receiver.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if answer == "stall":
                time.sleep(receiver.stall_seconds)
                answer = 200
            payload = b'{"ok":true}' if answer == 200 else b"receiver says no " + b"x" * 4000
            try:
                self.send_response(int(answer))
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # a stalled answer: the sender has hung up
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
