"""The SCIM surface's frame, which the app installs at start: its prefix, the media type every
response under it carries, and its error schema (RFC 7644 §3.1, §3.12). The endpoints themselves
(``keyhall.api.scim.routes``) load with the first SCIM request."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyhall.errors import Conflict, InvalidInput, KeyhallError

PREFIX = "/scim/v2"
MEDIA_TYPE = "application/scim+json"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def scim_error_body(status: int, exc: KeyhallError) -> dict[str, Any]:
    """RFC 7644 §3.12: ``status`` as a string, ``detail``, and ``scimType`` where one applies."""
    body: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(status), "detail": exc.message}
    scim_type = exc.details.get("scim_type")
    if scim_type is None and isinstance(exc, Conflict) and status == 409:
        scim_type = "uniqueness"
    if scim_type is None and isinstance(exc, InvalidInput) and status == 400:
        scim_type = "invalidSyntax" if exc.details.get("field") == "body" else "invalidValue"
    if scim_type:
        body["scimType"] = scim_type
    return body


class ScimMediaType:
    """Every response under ``/scim/`` (errors from any layer included) is ``application/scim+json``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/scim/"):
            await self.app(scope, receive, send)
            return

        async def send_scim(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-type"]
                headers.append((b"content-type", MEDIA_TYPE.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_scim)
