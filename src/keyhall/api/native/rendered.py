"""Response bodies rendered by the handler: once per entity version for reads, in the handler's own
thread for writes.

A GET of a connection validates the handler's dict against its response model and serializes it
(pydantic-core), and builds that dict first: work that gives the same bytes for as long as the
connection keeps its ``version`` (every change bumps it) and the public URL stays. The bytes are
kept here by that key, in a small LRU per process, and sent as they are. What FastAPI would have
sent is what is kept: the same model, validated and serialized to JSON the same way (by alias).

A write handler is a plain ``def``, which FastAPI runs in its thread pool; given a dict to check
against the route's response model, FastAPI then hands the check to the thread pool a second time.
:func:`json_response` renders the body in the handler's thread instead, the same way (the model the
route declares, by alias), and returns it as the response: one hand-off per write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from pydantic import TypeAdapter
from starlette.responses import Response

#: Entries kept per process (bodies of a few KB each: a SAML connection carries its certificates).
MAX_ENTRIES = 512


class RenderedBodies:
    """JSON bodies by key, built by ``render`` on a miss; the least recently used goes first.

    Used from the event loop only (one thread), so it takes no lock."""

    def __init__(self, model: type[Any], max_entries: int = MAX_ENTRIES):
        self._adapter: TypeAdapter[Any] = TypeAdapter(model)
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()
        self._max = max_entries

    def get(self, key: Hashable, render: Callable[[], dict[str, Any]]) -> bytes:
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
            return body
        body = self._adapter.dump_json(self._adapter.validate_python(render()), by_alias=True)
        self._bodies[key] = body
        if len(self._bodies) > self._max:
            self._bodies.popitem(last=False)
        return body


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
