"""The OpenAPI document as Keyhall really answers (``install_openapi(app)``).

FastAPI's generated document is corrected once, when first asked for:

- **Errors**: FastAPI documents a 422 ``HTTPValidationError`` on every operation with inputs, but
  Keyhall answers invalid input with **400** and its error body ``{"error": {"code", "message",
  "details"}}`` (``keyhall.api.http``), or the error shape of the surface that owns the path (a
  dialect's, RFC 6749's on ``/oauth2/token``). The 422s go; a 400 with the real shape takes their
  place; the schemas only they used are dropped.
- **Authentication**: operations whose dependencies authenticate the caller by API key
  (``get_principal``: the ``/v1`` API and the charged dialects) carry the HTTP bearer security
  scheme ``apiKey`` and a documented 401 in the error body; the ``/oauth2`` endpoints declare their
  own (``keyhall.web.oauth_docs``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from keyhall.api.deps import calls_api_key
from keyhall.api.http import error_style_for

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "string", "description": "machine-readable, e.g. invalid_input, not_found"},
            "message": {"type": "string", "description": "for people; names the field at fault"},
            "details": {"type": "object", "description": "e.g. field, and errors: [{field, message}]"},
        },
    }},
}
SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "kh_<key id>.<secret>",
               "description": "An API key's token (keyhall key create, or POST .../keys)."},
    "accessToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "An access token from /oauth2/token."},
    "clientSecretBasic": {"type": "http", "scheme": "basic",
                          "description": "client_id and client_secret (RFC 6749 §2.3.1)."},
}
_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"


def _needs_api_key(dependant: Dependant) -> bool:
    return calls_api_key(dependant)


def _error_response(path: str, description: str) -> dict[str, Any]:
    own = error_style_for(path)
    if own is None:
        return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}
    return {"description": f"{description} (in this API's own error shape)",
            "content": {"application/json": {"schema": {"type": "object"}}}}


def _correct(document: dict[str, Any], routes: Iterable[Any]) -> None:
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    # The app's routes as FastAPI's own generator walks them (routers included with their
    # dependencies), each with its path and its whole dependency tree.
    for route in iter_route_contexts(list(routes)):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        path = route.path_format or ""
        for method in route.methods or ():
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            fastapi_422 = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema")
            if fastapi_422 == {"$ref": _FASTAPI_VALIDATION}:
                del responses["422"]
                responses.setdefault("400", _error_response(
                    path, "Invalid input: the message and details name the field"))
            if _needs_api_key(route.dependant):
                operation["security"] = [{"apiKey": []}]
                responses.setdefault("401", _error_response(path, "Missing, unknown or revoked API key"))
    for unused in ("HTTPValidationError", "ValidationError"):  # the first refers to the second
        if f"#/components/schemas/{unused}'" not in repr(document):
            components["schemas"].pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected document at ``/openapi.json`` (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _correct(generate(), app.routes)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
