"""HTTP plumbing shared by every surface: correlation ids, body limits, error rendering.

Each surface registers how its errors look (``ErrorStyle``) for its path prefix; the native
``{"error": {"code", "message", "details"}}`` shape is the default.
"""

from __future__ import annotations

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

from keyhall.context import request_id_var
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


def error_style_for(path: str) -> ErrorStyle | None:
    """The error style registered for ``path`` (None: the native body)."""
    return next((style for style in _styles if path.startswith(style.prefix)), None)


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
        if exc.status_code == 413:
            err = KeyhallError(str(exc.detail))
            err.code = "payload_too_large"
            return error_response(request, err, 413)
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


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Valid JSON carries a control character only as a \u escape (raw ones are a syntax error the
# surface reports): bodies without such an escape need no second parse here.
_ESCAPED_CONTROL = re.compile(rb"\\u00[01][0-9a-fA-F]|\\u007[fF]")


def _control_character_path(value: Any, path: str = "") -> str | None:
    """The path of the first string (or key) holding a control character other than tab/newline."""
    if isinstance(value, str):
        return (path or "body") if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if _CONTROL.search(str(key)):
                return child
            found = _control_character_path(item, child)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _control_character_path(item, f"{path}[{index}]" if path else f"[{index}]")
            if found:
                return found
    return None


class UnexpectedErrorMiddleware:
    """The innermost layer: an unexpected exception becomes a logged 500 in the surface's error shape
    here, inside the other middleware, so the answer still carries the request id and the security
    headers (Starlette's own last-resort handler sits outside every middleware)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            err = KeyhallError("internal error; the request id identifies it in the logs")
            err.code = "internal_error"
            body = json.dumps(render_for_path(scope.get("path", ""), 500, err)).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def render_for_path(path: str, status: int, exc: KeyhallError) -> dict[str, Any]:
    for style in _styles:
        if path.startswith(style.prefix):
            return style.render(status, exc)
    return native_error_body(status, exc)


class BodyLimitMiddleware:
    """Check request bodies before any surface parses them: over the limit → 413 (declared or
    chunked), non-JSON on a JSON API → 415, JSON strings carrying control characters (NUL and the
    like, which no field accepts and PostgreSQL cannot store) → 400 naming the field. Errors are
    rendered in the style of the surface the path belongs to."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, json_prefixes: tuple[str, ...]):
        self.app = app
        self.max_bytes = max_bytes
        self.json_prefixes = json_prefixes

    async def _reject(self, scope: Scope, send: Send, status: int, error: KeyhallError) -> None:
        body = json.dumps(render_for_path(scope.get("path", ""), status, error)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self) -> KeyhallError:
        err = KeyhallError(f"the body exceeds {self.max_bytes} bytes")
        err.code = "payload_too_large"
        return err

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        length = _header(scope, "content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(scope, send, 413, self._too_large())
            return
        path: str = scope["path"]
        json_api = any(path.startswith(p) for p in self.json_prefixes)
        ctype = (_header(scope, "content-type") or "").split(";")[0].strip().lower()
        is_json = ctype == "application/json" or ctype.endswith("+json")
        if json_api and (length is None or int(length) > 0) and ctype and not is_json:
            err = KeyhallError("send the body as application/json")
            err.code = "unsupported_media_type"
            await self._reject(scope, send, 415, err)
            return
        chunks: list[bytes] = []
        received = 0
        while True:  # buffer the (bounded) body: it is checked whole, then replayed to the app
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # disconnected: let the app see it
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._reject(scope, send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if is_json and _ESCAPED_CONTROL.search(body):
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):
                parsed = None  # the surface reports malformed JSON itself
            where = _control_character_path(parsed) if parsed is not None else None
            if where:
                await self._reject(scope, send, 400, InvalidInput(
                    f"{where}: must not contain control characters", field=where))
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return str(value) if value else None


CallNext = Callable[[Request], Awaitable[Response]]
