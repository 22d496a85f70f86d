"""The SCIM 2.0 surface (RFC 7644), one service per directory at ``/scim/v2/{directory_id}/``.

It is left out of ``/openapi.json``: a SCIM service describes itself through its own discovery
endpoints (``ServiceProviderConfig``, ``ResourceTypes``, ``Schemas``).

``ROUTER`` is mounted at ``PREFIX`` (``app.mount``): one prefix test sends every other request
past it, and a sync's thousands of requests do not try the routes of every other surface first
(about 0.2 ms of CPU per request when it was included after them). Its routes are plain Starlette
routes (``common``)."""

from starlette.routing import Router

from keyhall.api.scim import discovery, groups, search, users
from keyhall.api.scim.common import PREFIX, ScimMediaType, scim_error_body

ROUTER = Router(routes=[*discovery.routes, *search.routes, *users.routes, *groups.routes])

__all__ = ["PREFIX", "ROUTER", "ScimMediaType", "scim_error_body"]
