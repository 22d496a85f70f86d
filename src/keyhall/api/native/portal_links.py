"""``/v1/organizations/{org}/portal-links``: single-use links into the setup portal, for an
organization's IT admin. The answer's ``url`` is the only place the link's token appears."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep
from keyhall.api.native.schemas import iso
from keyhall.api.responses import json_response
from keyhall.core import portal

router = APIRouter(prefix="/v1/organizations/{org}/portal-links", tags=["portal"])


class PortalLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    intent: str = Field(max_length=32, description="sso, domain_verification, directory_sync or certificate_renewal")
    return_url: str | None = Field(default=None, max_length=2048,
                                   description="An absolute http(s) URL the portal links back to")


class PortalLinkOut(BaseModel):
    url: str
    expires_at: str


@router.post("", status_code=201, response_model=PortalLinkOut)
def create_portal_link(org: str, body: PortalLinkCreate, uow: UowDep, ctx: ContextDep,
                       runtime: RuntimeDep) -> Response:
    """A link that opens the portal once, within ``KEYHALL_PORTAL_LINK_TTL_SECONDS`` (owner role, or
    admin where the organization allows admins to configure SSO)."""
    issued = portal.issue_link(uow, portal.store_of(uow), ctx, org, intent=body.intent,
                               return_url=body.return_url, public_url=runtime.settings.public_url,
                               ttl=timedelta(seconds=runtime.settings.portal_link_ttl_seconds))
    return json_response(PortalLinkOut, {"url": issued.url, "expires_at": iso(issued.link.expires_at)},
                         status_code=201, headers={"Cache-Control": "no-store"})
