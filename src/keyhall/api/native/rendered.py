"""Response bodies rendered by the handler: once per entity version for reads, in the handler's own
thread for writes.

A GET of a connection validates the handler's dict against its response model and serializes it
(pydantic-core), and builds that dict first: work that gives the same bytes for as long as the
connection keeps its ``version`` (every change bumps it) and the public URL stays. The bytes are
kept here by that key, in a small LRU per process, and sent as they are. What FastAPI would have
sent is what is kept: the same model, validated and serialized to JSON the same way (by alias).

Write handlers render their own body instead (:func:`keyhall.api.responses.json_response`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from pydantic import TypeAdapter

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
