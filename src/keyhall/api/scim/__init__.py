"""The SCIM 2.0 surface (RFC 7644), one service per directory at ``/scim/v2/{directory_id}/``.

It is left out of ``/openapi.json``: a SCIM service describes itself through its own discovery
endpoints (``ServiceProviderConfig``, ``ResourceTypes``, ``Schemas``).

``ROUTER`` is mounted at ``PREFIX`` (``app.mount``): one prefix test sends every other request
past it, and a sync's thousands of requests do not try the routes of every other surface first
(about 0.2 ms of CPU per request when it was included after them). Its routes are plain Starlette
routes (``common``, ``routes``), imported with the first SCIM request: they bring ``scim2-models``
and its filter grammar (some 7 MB per worker), which a service whose organizations sync no
directory never needs. That first request pays the import (a few tenths of a second, once per
worker)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from keyhall.api.scim.media import PREFIX, ScimMediaType, scim_error_body


class _Routes:
    """The SCIM router, imported on the first request that reaches it."""

    def __init__(self) -> None:
        self._router: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            # Imported here: the endpoints and scim2-models load with the first SCIM request (above).
            from keyhall.api.scim.routes import ROUTER as router

            self._router = router
        await self._router(scope, receive, send)


ROUTER = _Routes()

__all__ = ["PREFIX", "ROUTER", "ScimMediaType", "scim_error_body"]
