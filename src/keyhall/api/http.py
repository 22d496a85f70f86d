"""HTTP plumbing shared by every surface: correlation ids, body limits, error rendering.

Each surface registers how its errors look (``ErrorStyle``) for its path prefix; the native
``{"error": {"code", "message", "details"}}`` shape is the default.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyhall.core.connections import READ_ONLY_FIELDS
from keyhall.core.validation import field_path
from keyhall.errors import (
    Conflict,
    IdPValidationError,
    InvalidInput,
    KeyhallError,
    NotAcceptable,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)

log = logging.getLogger("keyhall.http")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

CORRELATION_HEADERS = ("x-fapi-interaction-id", "x-request-id", "x-client-request-id")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

STATUS_BY_ERROR: list[tuple[type[KeyhallError], int]] = [
    (InvalidInput, 400), (Unauthenticated, 401), (PermissionDenied, 403), (NotFound, 404), (NotAcceptable, 406),
    (Conflict, 409),
    (PreconditionFailed, 412), (IdPValidationError, 422), (RateLimited, 429), (ServiceUnavailable, 503),
]


def status_for(exc: KeyhallError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


@dataclass(frozen=True)
class ErrorStyle:
    """How one surface renders an error: a body builder, keyed by path prefix."""

    prefix: str
    render: Callable[[int, KeyhallError], dict[str, Any]]


def native_error_body(status: int, exc: KeyhallError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}


_styles: list[ErrorStyle] = []


def register_error_style(style: ErrorStyle) -> None:
    _styles[:] = [s for s in _styles if s.prefix != style.prefix]
    _styles.append(style)
    _styles.sort(key=lambda s: len(s.prefix), reverse=True)


def error_response(request: Request, exc: KeyhallError, status: int | None = None) -> JSONResponse:
    status = status or status_for(exc)
    render: Callable[[int, KeyhallError], dict[str, Any]] = native_error_body
    for style in _styles:
        if request.url.path.startswith(style.prefix):
            render = style.render
            break
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="keyhall"'
    return JSONResponse(render(status, exc), status_code=status, headers=headers)


def invalid_from_request_errors(errors: list[Any]) -> InvalidInput:
    problems = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        where = loc[0] if loc else "body"
        path = field_path(loc[1:]) if where == "body" else f"{where}.{field_path(loc[1:])}"
        kind = error.get("type")
        if kind == "json_invalid":
            problems.append({"field": "body", "message": "is not valid JSON"})
            continue
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            message = "is read-only" if path.split(".")[-1] in READ_ONLY_FIELDS else "is not a known field"
        elif kind == "missing":
            message = "is required"
        problems.append({"field": path or "body", "message": message})
    first = problems[0] if problems else {"field": "body", "message": "is invalid"}
    text = f"{first['field']}: {first['message']}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return InvalidInput(text, field=first["field"], details={"errors": problems})


def install_error_handlers(app: FastAPI) -> None:
    async def on_keyhall_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyhallError)
        if status_for(exc) >= 500:
            log.warning("request failed: %s", exc.message)
        return error_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, invalid_from_request_errors(list(exc.errors())))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        mapping: dict[int, type[KeyhallError]] = {404: NotFound, 401: Unauthenticated, 403: PermissionDenied}
        if exc.status_code == 405:
            err = InvalidInput(f"method {request.method} is not allowed here")
            err.code = "method_not_allowed"
            return error_response(request, err, 405)
        cls = mapping.get(exc.status_code, InvalidInput)
        message = "no such resource" if exc.status_code == 404 else str(exc.detail)
        return error_response(request, cls(message), exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        err = KeyhallError("internal error; the request id identifies it in the logs")
        err.code = "internal_error"
        return error_response(request, err, 500)

    app.add_exception_handler(KeyhallError, on_keyhall_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _header(scope: Scope, name: str) -> str | None:
    raw = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == raw:
            text: str = value.decode("latin-1")
            return text
    return None


class CorrelationMiddleware:
    """Echo the caller's correlation id (or a fresh UUID) on every response, and log with it."""

    def __init__(self, app: ASGIApp, *, header_by_prefix: dict[str, str] | None = None):
        self.app = app
        # Surfaces whose API names its own correlation header get a generated id under that name.
        self.header_by_prefix = header_by_prefix or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        echoed: list[tuple[bytes, bytes]] = []
        request_id = None
        for name in CORRELATION_HEADERS:
            value = _header(scope, name)
            if value is not None and _SAFE_ID.match(value):
                echoed.append((name.encode(), value.encode()))
                request_id = request_id or value
        if request_id is None:
            request_id = str(uuid.uuid4())
            echoed.append((b"x-request-id", request_id.encode()))
            path: str = scope.get("path", "")
            for prefix, header in self.header_by_prefix.items():
                if path.startswith(prefix):
                    echoed.append((header.encode(), request_id.encode()))
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dict(echoed)]
                message["headers"] = headers + echoed
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse bodies over the limit (413) and non-JSON bodies on JSON APIs (415) before parsing."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, json_prefixes: tuple[str, ...]):
        self.app = app
        self.max_bytes = max_bytes
        self.json_prefixes = json_prefixes

    async def _reject(self, scope: Scope, send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        length = _header(scope, "content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(scope, send, 413, "payload_too_large", f"the body exceeds {self.max_bytes} bytes")
            return
        path: str = scope["path"]
        if any(path.startswith(p) for p in self.json_prefixes):
            ctype = (_header(scope, "content-type") or "").split(";")[0].strip().lower()
            if (length is None or int(length) > 0) and ctype and not (
                ctype == "application/json" or ctype.endswith("+json")
            ):
                await self._reject(scope, send, 415, "unsupported_media_type",
                                   "send the body as application/json")
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(scope, send, 413, "payload_too_large", f"the body exceeds {self.max_bytes} bytes")


class _TooLarge(Exception):
    pass


def request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return str(value) if value else None


CallNext = Callable[[Request], Awaitable[Response]]
