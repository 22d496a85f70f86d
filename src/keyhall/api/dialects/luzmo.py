"""Dialect `luzmo`: Luzmo's ``POST /0.1.0/ssoconfig`` action envelope over the core's connections.

Every call is one POST whose JSON names the action::

    {"action": "create" | "get" | "update" | "delete", "version": "0.1.0",
     "key": API key id, "token": API key secret,          (or Authorization: Bearer kh_...)
     "id": configuration id (update, delete), "properties": {...}, "find": {"where": {...}}}

An SSO configuration is an OIDC connection, shown in the page's shape (``config.client_secret``
holds the fixed mask when a secret is set; the endpoint URLs are the explicit ones, else the
discovered ones). Connections of other protocols are invisible here. Successful calls answer
200, as the page documents; ``delete`` answers the deleted configuration. Errors name fields by
their path in the envelope (``properties.config.issuer``) and carry what Luzmo's SDKs read: a
top-level ``message`` and, for field errors, ``validation`` (``{"field": ["reason"]}``), beside
the native ``error`` object.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.dialects.common import (
    Dialect,
    body_principal,
    field_problems,
    parse_model,
    prefix_renamer,
    translated_errors,
)
from keyhall.api.dialects.luzmo_schemas import CONFIG_TO_CORE, ENVELOPE_USE, READ_ONLY, Envelope, FindIn, PropertiesIn
from keyhall.api.http import ErrorStyle, native_error_body, request_id
from keyhall.api.native.schemas import iso
from keyhall.core import connection_service as service
from keyhall.core.access import Principal
from keyhall.core.connection_service import Context
from keyhall.core.connection_settings import DISCOVERED_ENDPOINTS
from keyhall.core.connections import Connection, ConnectionInput
from keyhall.core.organizations import is_uuid
from keyhall.core.ports import ConnectionFilter, UnitOfWork
from keyhall.core.vocabulary import SECRET_MASK, Protocol
from keyhall.errors import InvalidInput, KeyhallError, NotFound
from keyhall.runtime import Runtime

PREFIX = "/0.1.0/"
PATH = "/0.1.0/ssoconfig"

router = APIRouter(tags=["luzmo"])

RENAME = prefix_renamer({
    "oidc.userinfo_url": "properties.config.user_info_url",
    # Luzmo has no discovery or JWKS URL: both come from the issuer, the field to fix.
    "oidc.discovery_url": "properties.config.issuer",
    "oidc.jwks_uri": "properties.config.issuer",
    "oidc": "properties.config",
    "disable_email_password": "properties.disable_email_password",
    "protocol": "properties.protocol",
})

def ssoconfig_out(conn: Connection) -> dict[str, Any]:
    """A connection in the page's response shape."""
    settings, found = conn.settings, conn.discovered or {}

    def endpoint(name: str) -> Any:
        return settings.get(name) or found.get(DISCOVERED_ENDPOINTS[name])

    return {
        "id": conn.id,
        "organization_id": conn.organization_id,
        "protocol": "OIDC",
        "config": {
            "client_id": settings.get("client_id"),
            "client_secret": SECRET_MASK if conn.secrets_set().get("client_secret_set") else None,
            "issuer": settings.get("issuer") or found.get("issuer"),
            "authorization_url": endpoint("authorization_url"),
            "token_url": endpoint("token_url"),
            "user_info_url": endpoint("userinfo_url"),
        },
        "is_verified": conn.is_verified,
        "disable_email_password": conn.disable_email_password,
        "created_at": iso(conn.created_at),
        "updated_at": iso(conn.updated_at),
    }


def _properties(raw: dict[str, Any] | None) -> PropertiesIn:
    for name, reason in READ_ONLY.items():
        if raw is not None and name in raw:
            raise InvalidInput(f"properties.{name}: {reason}", field=f"properties.{name}")
    props = parse_model(PropertiesIn, raw or {}, prefix="properties")
    if "protocol" in props.model_fields_set and str(props.protocol).lower() != Protocol.OIDC:
        raise InvalidInput("properties.protocol: only OIDC is supported", field="properties.protocol")
    for name in ("client_id", "issuer"):
        if name in props.config.model_fields_set and getattr(props.config, name) is None:
            raise InvalidInput(f"properties.config.{name}: must not be null", field=f"properties.config.{name}")
    return props


def _organization_ref(principal: Principal, requested: str | None, field: str) -> str:
    """The organization the call acts on: the one named, or the key's own."""
    if requested is not None:
        if not is_uuid(requested):
            raise InvalidInput(f"{field}: must be a UUID", field=field)
        return requested
    if principal.organization_id is None:
        raise InvalidInput(f"{field}: is required with an instance-admin key", field=field)
    return principal.organization_id


def _core_input(props: PropertiesIn, existing: Connection | None) -> ConnectionInput:
    data: dict[str, Any] = {}
    if existing is None:
        data["protocol"] = Protocol.OIDC
    given = props.config.model_dump(exclude_unset=True)
    if given or existing is None:
        # A response shows discovered endpoints in the explicit fields; the core takes one sent
        # back as read for what it is (the endpoint in effect), not as a new override.
        data["oidc"] = {CONFIG_TO_CORE[name]: value for name, value in given.items()}
    if "disable_email_password" in props.model_fields_set:
        data["disable_email_password"] = props.disable_email_password
    return parse_model(ConnectionInput, data)


def _check_envelope_fields(envelope: Envelope) -> None:
    """Refuse envelope members the action does not read (empty ones the SDKs always send pass)."""
    for name, actions in ENVELOPE_USE.items():
        value = getattr(envelope, name)
        if value is None or envelope.action in actions or (name in ("properties", "associations") and not value):
            continue
        raise InvalidInput(f"{name}: is not used by {envelope.action} (only by {' and '.join(actions)})", field=name)
    if envelope.associations:
        raise InvalidInput("associations: are not supported; name the organization in properties.organization_id",
                           field="associations")


def _oidc_connection(uow: UnitOfWork, ctx: Context, org_ref: str, connection_id: str) -> Connection:
    conn = service.get_connection(uow, ctx, org_ref, connection_id)
    if conn.protocol is not Protocol.OIDC:
        raise NotFound("SSO configuration not found", details={"id": connection_id})
    return conn


def _create(uow: UnitOfWork, ctx: Context, runtime: Runtime, envelope: Envelope) -> dict[str, Any]:
    if envelope.properties is None:
        raise InvalidInput("properties: is required", field="properties")
    props = _properties(envelope.properties)
    if "config" not in props.model_fields_set:
        raise InvalidInput("properties.config: is required (client_id and issuer)", field="properties.config")
    org_ref = _organization_ref(ctx.principal, props.organization_id, "properties.organization_id")
    data = _core_input(props, None)
    return ssoconfig_out(service.create_connection(uow, ctx, org_ref, data, runtime.inspector))


def _required_id(envelope: Envelope) -> str:
    if envelope.id is None:
        raise InvalidInput(f"id: is required for {envelope.action}", field="id")
    return envelope.id


def _update(uow: UnitOfWork, ctx: Context, runtime: Runtime, envelope: Envelope) -> dict[str, Any]:
    connection_id = _required_id(envelope)
    props = _properties(envelope.properties)
    org_ref = _organization_ref(ctx.principal, props.organization_id, "properties.organization_id")
    existing = _oidc_connection(uow, ctx, org_ref, connection_id)
    data = _core_input(props, existing)
    return ssoconfig_out(service.update_connection(uow, ctx, org_ref, existing.id, data, runtime.inspector))


def _delete(uow: UnitOfWork, ctx: Context, envelope: Envelope) -> dict[str, Any]:
    connection_id = _required_id(envelope)
    raw = envelope.properties or {}
    extra = sorted(set(raw) - {"organization_id"})
    if extra:
        raise InvalidInput(f"properties.{extra[0]}: is not used by delete", field=f"properties.{extra[0]}")
    props = _properties(raw)
    org_ref = _organization_ref(ctx.principal, props.organization_id, "properties.organization_id")
    existing = _oidc_connection(uow, ctx, org_ref, connection_id)
    return ssoconfig_out(service.delete_connection(uow, ctx, org_ref, existing.id))


def _get(uow: UnitOfWork, ctx: Context, envelope: Envelope) -> dict[str, Any]:
    raw = envelope.find or {}
    where = raw.get("where")
    for name, value in where.items() if isinstance(where, dict) else ():
        if isinstance(value, dict | list):
            raise InvalidInput(f"find.where.{name}: only equality is supported", field=f"find.where.{name}")
    find = parse_model(FindIn, raw, prefix="find")
    wanted = find.where
    org_ref = ctx.principal.organization_id or wanted.organization_id
    if org_ref is None:
        raise InvalidInput("find.where.organization_id: is required with an instance-admin key",
                           field="find.where.organization_id")
    # Equality on the two fields this call fixes (the organization, OIDC) is settled here; ids and
    # "oidc"/"OIDC" compare without case, as Luzmo's do. The rest is the core's filter.
    fixed = (org_ref.lower(), str(Protocol.OIDC))
    asked = (wanted.organization_id or org_ref, wanted.protocol or str(Protocol.OIDC))
    if not is_uuid(org_ref) or tuple(v.lower() for v in asked) != fixed:
        return {"count": 0, "rows": []}
    where_core = ConnectionFilter(protocols=(str(Protocol.OIDC),), id=wanted.id, is_verified=wanted.is_verified,
                                  disable_email_password=wanted.disable_email_password)
    try:
        found = service.find_connections(uow, ctx, org_ref, where_core, offset=find.offset, limit=find.limit)
    except NotFound:
        return {"count": 0, "rows": []}  # an organization the key cannot see holds nothing it may find
    return {"count": found.total, "rows": [ssoconfig_out(c) for c in found.items]}


# The key travels in the envelope (key, token) or, failing that, as a bearer token.
@router.post(PATH, summary="Create, get, update or delete SSO configurations (Luzmo envelope)",
             openapi_extra={"security": [{"apiKey": []}, {}]})
def ssoconfig(envelope: Envelope, request: Request, uow: UowDep, runtime: RuntimeDep) -> dict[str, Any]:
    principal = body_principal(request, uow, runtime, envelope.key, envelope.token)
    _check_envelope_fields(envelope)
    ctx = Context(principal=principal, request_id=request_id(request), now=runtime.clock())
    with translated_errors(RENAME):
        if envelope.action == "create":
            return _create(uow, ctx, runtime, envelope)
        if envelope.action == "update":
            return _update(uow, ctx, runtime, envelope)
        if envelope.action == "delete":
            return _delete(uow, ctx, envelope)
        return _get(uow, ctx, envelope)


def error_body(status: int, exc: KeyhallError) -> dict[str, Any]:
    """Every error under the dialect's prefix (auth, rate limit, bad JSON, 404, 413 included) as
    Luzmo's SDKs read it: ``response.json()["message"]`` and ``validation`` items' first reason."""
    body: dict[str, Any] = {"message": exc.message}
    problems = field_problems(exc)
    if problems:
        body["validation"] = problems
    return {**body, **native_error_body(status, exc)}


# Rate limiting happens in the handler, once the envelope's key (or the bearer token) has authenticated.
DIALECT = Dialect("luzmo", router, ErrorStyle(prefix=PREFIX, render=error_body), charged=False)
