"""A JSON response rendered by the handler itself, as FastAPI would render the route's response model.

A write handler is a plain ``def``, which FastAPI runs in its thread pool; given a dict to check
against the route's response model, FastAPI then hands the check to the thread pool a second time.
:func:`json_response` renders the body in the handler's thread instead, the same way (the model the
route declares, by alias), and returns it as the response: one hand-off per write. The route keeps
its ``response_model`` for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter
from starlette.responses import Response

_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}  # one per response model (a race builds two: harmless)


def _adapter(model: type[Any]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS.setdefault(model, TypeAdapter(model))
    return adapter


def json_response(model: type[Any], data: dict[str, Any], *, status_code: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    """``data`` checked against ``model`` and serialized by alias, as FastAPI does with a route's
    response model, as the response itself (module docstring). Safe from any thread."""
    adapter = _adapter(model)
    body = adapter.dump_json(adapter.validate_python(data), by_alias=True)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)
