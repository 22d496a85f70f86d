"""Every SCIM endpoint, in one Starlette router (``keyhall.api.scim`` mounts it on first use)."""

from starlette.routing import Router

from keyhall.api.scim import discovery, groups, search, users

ROUTER = Router(routes=[*discovery.routes, *search.routes, *users.routes, *groups.routes])
