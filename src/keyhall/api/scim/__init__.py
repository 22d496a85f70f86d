"""The SCIM 2.0 surface (RFC 7644), one service per directory at ``/scim/v2/{directory_id}/``.

It is left out of ``/openapi.json``: a SCIM service describes itself through its own discovery
endpoints (``ServiceProviderConfig``, ``ResourceTypes``, ``Schemas``)."""

from keyhall.api.scim import discovery, groups, search, users
from keyhall.api.scim.common import PREFIX, ScimMediaType, scim_error_body

ROUTERS = (discovery.router, search.router, users.router, groups.router)

__all__ = ["PREFIX", "ROUTERS", "ScimMediaType", "scim_error_body"]
