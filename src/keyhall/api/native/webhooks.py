"""``/v1/webhook-endpoints``: where events are delivered (Standard Webhooks), for instance admins.

The signing secret is answered once, by ``POST`` and by ``POST .../{id}/secret`` (rotation: the
previous secret keeps signing beside the new one for ``KEYHALL_WEBHOOK_SECRET_OVERLAP_SECONDS``).
``GET .../{id}/deliveries`` is the delivery log; ``POST .../deliveries/{did}/redeliver`` sends one again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.native.schemas import iso
from keyhall.api.responses import json_response
from keyhall.core import webhook_service as service
from keyhall.core.webhooks import MAX_DESCRIPTION, MAX_EVENT_TYPES, MAX_URL, Delivery, DeliveryStatus, WebhookEndpoint
from keyhall.runtime import Runtime
from keyhall.security import outbound

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(min_length=1, max_length=MAX_URL)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    event_types: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=MAX_EVENT_TYPES)
    enabled: bool = True


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    event_types: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=MAX_EVENT_TYPES)
    enabled: bool | None = None


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    secret_set: bool
    previous_secret_expires_at: str | None
    created_at: str
    updated_at: str


class EndpointWithSecret(EndpointOut):
    secret: str


class EndpointListOut(BaseModel):
    data: list[EndpointOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    response_excerpt: str | None
    delivered_at: str | None
    created_at: str


class DeliveryListOut(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


def endpoint_out(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "description": endpoint.description,
            "event_types": list(endpoint.event_types), "enabled": endpoint.enabled, "secret_set": True,
            "previous_secret_expires_at": iso(endpoint.previous_secret_expires_at) if endpoint.previous_secret
            else None, "created_at": iso(endpoint.created_at), "updated_at": iso(endpoint.updated_at)}


def delivery_out(delivery: Delivery) -> dict[str, Any]:
    return {"id": delivery.id, "endpoint_id": delivery.endpoint_id, "event_id": delivery.event_id,
            "event_type": delivery.event_type, "status": str(delivery.status), "attempts": delivery.attempts,
            "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status is DeliveryStatus.PENDING else None,
            "last_attempt_at": iso(delivery.last_attempt_at), "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error, "response_excerpt": delivery.response_excerpt,
            "delivered_at": iso(delivery.delivered_at), "created_at": iso(delivery.created_at)}


def _url_check(runtime: Runtime) -> service.UrlCheck:
    def check(url: str) -> None:
        outbound.check_url(url, runtime.webhook_policy, field="url")

    return check


@router.post("", status_code=201, response_model=EndpointWithSecret)
def create_endpoint(body: EndpointCreate, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    endpoint = service.create_endpoint(uow, ctx, url=body.url, description=body.description,
                                       event_types=body.event_types, enabled=body.enabled,
                                       check_url=_url_check(runtime))
    return json_response(EndpointWithSecret, {**endpoint_out(endpoint), "secret": endpoint.secret}, status_code=201)


@router.get("", response_model=EndpointListOut)
async def list_endpoints(uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                         limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None) -> dict[str, Any]:
    items, next_cursor = await run_reads(runtime, uow, lambda: service.list_endpoints(uow.webhooks, ctx, limit=limit,
                                                                                     cursor=cursor))
    return {"data": [endpoint_out(e) for e in items], "next_cursor": next_cursor}


@router.get("/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    return endpoint_out(await run_reads(runtime, uow, lambda: service.get_endpoint(uow.webhooks, ctx, endpoint_id)))


@router.patch("/{endpoint_id}", response_model=EndpointOut)
def update_endpoint(endpoint_id: str, body: EndpointUpdate, uow: UowDep, ctx: ContextDep,
                    runtime: RuntimeDep) -> Response:
    changes = service.EndpointChanges(url=body.url, description=body.description, event_types=body.event_types,
                                      enabled=body.enabled, fields=frozenset(body.model_fields_set))
    return json_response(EndpointOut, endpoint_out(service.update_endpoint(uow, ctx, endpoint_id, changes,
                                                                           check_url=_url_check(runtime))))


@router.delete("/{endpoint_id}", status_code=204)
def delete_endpoint(endpoint_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    service.delete_endpoint(uow, ctx, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/secret", response_model=EndpointWithSecret)
def rotate_secret(endpoint_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> Response:
    overlap = timedelta(seconds=runtime.settings.webhook_secret_overlap_seconds)
    endpoint, secret = service.rotate_endpoint_secret(uow, ctx, endpoint_id, overlap)
    return json_response(EndpointWithSecret, {**endpoint_out(endpoint), "secret": secret})


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryListOut)
async def list_deliveries(endpoint_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
                          limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
                          status: DeliveryStatus | None = None) -> dict[str, Any]:
    items, next_cursor = await run_reads(runtime, uow, lambda: service.list_deliveries(
        uow.webhooks, ctx, endpoint_id, limit=limit, cursor=cursor, status=str(status) if status else None))
    return {"data": [delivery_out(d) for d in items], "next_cursor": next_cursor}


@router.post("/{endpoint_id}/deliveries/{delivery_id}/redeliver", status_code=202, response_model=DeliveryOut)
def redeliver(endpoint_id: str, delivery_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    return json_response(DeliveryOut, delivery_out(service.redeliver(uow, ctx, endpoint_id, delivery_id)),
                         status_code=202)
