"""SCIM discovery (RFC 7644 §4): ServiceProviderConfig, ResourceTypes and Schemas (RFC 7643 §5-7).

What Keyhall declares here is what it does: PATCH and filters yes (at most ``MAX_RESULTS`` per
page), ETags yes; bulk, sorting and password changes no (directory users sign in through SSO).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    ListResponse,
    Meta,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    User,
)

from keyhall.protocols.scim.resources import POLICY, UserResource

MAX_RESULTS = 200
DOCS = "https://datatracker.ietf.org/doc/html/rfc7644"


@lru_cache(maxsize=256)
def service_provider_config(base_url: str) -> dict[str, Any]:
    config = ServiceProviderConfig(
        documentation_uri=DOCS,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[AuthenticationScheme(
            type="oauthbearertoken", name="Bearer token", primary=True,
            description="The directory's token, as Authorization: Bearer <token>")],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base_url}/ServiceProviderConfig"),
    )
    data: dict[str, Any] = config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, scim_policy=POLICY)
    return data


def _resource_types(base_url: str) -> list[ResourceType]:
    types = []
    for model, name in ((UserResource, "User"), (Group, "Group")):
        rtype = ResourceType.from_resource(model)
        rtype.id = name
        rtype.meta = Meta(resource_type="ResourceType", location=f"{base_url}/ResourceTypes/{name}")
        types.append(rtype)
    return types


def _schemas(base_url: str) -> list[Schema]:
    schemas = []
    for model in (User, EnterpriseUser, Group):
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=f"{base_url}/Schemas/{schema.id}")
        schemas.append(schema)
    return schemas


def _listed(items: list[Any], model: Any) -> dict[str, Any]:
    response = ListResponse[model](total_results=len(items), start_index=1, items_per_page=len(items),
                                   resources=items)
    data: dict[str, Any] = response.model_dump(scim_ctx=Context.SEARCH_RESPONSE, scim_policy=POLICY)
    return data


# The documents depend only on the base URL and take milliseconds to build (Schemas: ~15 ms), so
# they are built once per directory; callers only serialize them and must not change them.
@lru_cache(maxsize=256)
def resource_types(base_url: str) -> dict[str, Any]:
    return _listed(_resource_types(base_url), ResourceType)


def resource_type(base_url: str, name: str) -> dict[str, Any] | None:
    found = [t for t in resource_types(base_url)["Resources"] if t["id"].lower() == name.lower()]
    return found[0] if found else None


@lru_cache(maxsize=256)
def schemas(base_url: str) -> dict[str, Any]:
    return _listed(_schemas(base_url), Schema)


def schema(base_url: str, urn: str) -> dict[str, Any] | None:
    found = [s for s in schemas(base_url)["Resources"] if s["id"].lower() == urn.lower()]
    return found[0] if found else None
