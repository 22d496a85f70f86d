"""Dialect `keycard`: ``/organizations/{organization_id}/sso-connection``, one SSO connection per organization.

Keycard knows one SSO connection per organization: here it is the organization's default
connection (an OIDC one). ``POST`` enables SSO — it creates the default connection (201) or,
when one exists, sets the three fields Keycard names on it in place (200; an absent
``client_secret`` means none). ``GET`` reads it, ``PATCH`` changes only the fields sent,
``DELETE`` disables SSO by deleting it (204).

The response is the page's shape: ``identifier`` is the issuer, ``client_secret`` is never
shown (``client_secret_set``), ``permissions`` is what the calling key may do, and
``protocols`` is what discovery found at the IdP (null where it publishes nothing). Keyhall
checks the identifier by fetching the IdP's discovery document, so a non-URL identifier (the
SDK example's ``"x"``) is a 400 naming ``identifier`` and an unreachable IdP is a 422.
``organization_id`` is the organization's id or its label (slug). ``X-Client-Request-Id``,
when sent, must be a UUID; it is echoed on the response and recorded in the audit trail.
"""

from __future__ import annotations

import re
from contextlib import suppress
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from keyhall.api.deps import ContextDep, RuntimeDep, UowDep, run_reads
from keyhall.api.dialects.common import Dialect, parse_model, prefix_renamer, translated_errors
from keyhall.api.http import ErrorStyle, native_error_body
from keyhall.api.native.schemas import iso
from keyhall.core import connection_service as service
from keyhall.core.access import can_write_sso
from keyhall.core.connection_service import Context
from keyhall.core.connections import Connection, ConnectionInput
from keyhall.core.organizations import Organization
from keyhall.core.ports import UnitOfWork
from keyhall.core.vocabulary import Protocol
from keyhall.errors import Conflict, InvalidInput, NotFound

PREFIX = "/organizations/"
PATH = "/organizations/{organization_id}/sso-connection"
ORGANIZATION_ID_MAX = 255
IDENTIFIER_MAX = 2048

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

RENAME = prefix_renamer({
    "oidc.issuer": "identifier",
    # The discovery document and the JWKS are found from the identifier: it is the field to fix.
    "oidc.discovery_url": "identifier",
    "oidc.jwks_uri": "identifier",
    "oidc.client_id": "client_id",
    "oidc.client_secret": "client_secret",
})

FIELDS_TO_CORE = {"client_id": "client_id", "identifier": "issuer", "client_secret": "client_secret"}

OAUTH2_MEMBERS = ("authorization_endpoint", "code_challenge_methods_supported", "jwks_uri",
                  "registration_endpoint", "scopes_supported", "token_endpoint")


class SsoConnectionEnable(BaseModel):
    """``POST`` body."""

    model_config = ConfigDict(extra="forbid")

    client_id: str
    identifier: Annotated[str, StringConstraints(min_length=1, max_length=IDENTIFIER_MAX)]
    client_secret: str | None = None


class SsoConnectionUpdate(BaseModel):
    """``PATCH`` body: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    client_id: str | None = None
    identifier: Annotated[str, StringConstraints(min_length=1, max_length=IDENTIFIER_MAX)] | None = None
    client_secret: str | None = None


def check_request(
    organization_id: str,
    x_client_request_id: Annotated[str | None, Header(alias="X-Client-Request-Id")] = None,
) -> None:
    """The page's limits on the path and the correlation header, checked before anything else."""
    if not 1 <= len(organization_id) <= ORGANIZATION_ID_MAX:
        raise InvalidInput(f"organization_id: must be 1-{ORGANIZATION_ID_MAX} characters", field="organization_id")
    if x_client_request_id is not None and not _UUID.match(x_client_request_id):
        raise InvalidInput("X-Client-Request-Id: must be a UUID", field="X-Client-Request-Id")


router = APIRouter(tags=["keycard"], dependencies=[Depends(check_request)])


def sso_connection_out(conn: Connection, org: Organization, ctx: Context) -> dict[str, Any]:
    """A connection in the page's response shape, with the calling key's permissions."""
    found = conn.discovered or {}
    may_update = can_write_sso(ctx.principal, org)
    return {
        "id": conn.id,
        "client_id": conn.settings.get("client_id"),
        "client_secret_set": conn.secrets_set()["client_secret_set"],
        "created_at": iso(conn.created_at),
        "identifier": conn.settings.get("issuer"),
        "updated_at": iso(conn.updated_at),
        # Reading needs any role, so a key that got this far may read; updating needs the SSO writer role.
        "permissions": {
            "organizations": {"read": True, "update": may_update},
            "users": {"read": True, "list": True},
        },
        "protocols": {
            "oauth2": {name: found.get(name) for name in OAUTH2_MEMBERS},
            "openid": {"userinfo_endpoint": found.get("userinfo_endpoint")},
        },
    }


def _oidc_only(conn: Connection, error: type[NotFound] | type[Conflict]) -> Connection:
    if conn.protocol is not Protocol.OIDC:
        raise error(f"this organization's SSO connection uses {conn.protocol}, which this API cannot show or "
                    "change; manage it through /v1/organizations/{org}/connections",
                    details={"id": conn.id, "protocol": str(conn.protocol)})
    return conn


def _enabled_connection(uow: UnitOfWork, ctx: Context, org: Organization) -> Connection:
    try:
        conn = service.get_default_connection(uow, ctx, org.id)
    except NotFound:
        raise NotFound("SSO is not enabled for this organization") from None
    return _oidc_only(conn, NotFound)


def _core_input(fields: dict[str, Any], *, create: bool) -> ConnectionInput:
    block = {FIELDS_TO_CORE[name]: value for name, value in fields.items()}
    data: dict[str, Any] = {"oidc": block} if block else {}
    if create:
        data["protocol"] = Protocol.OIDC
    return parse_model(ConnectionInput, data)


@router.post(PATH, status_code=201, summary="Enable SSO for organization")
def enable(
    organization_id: str, body: SsoConnectionEnable, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep,
    response: Response,
) -> dict[str, Any]:
    with translated_errors(RENAME):
        org = service.organization_for(uow, ctx, organization_id)
        with suppress(NotFound):  # not enabled yet: this call creates the connection
            _oidc_only(service.get_default_connection(uow, ctx, org.id), Conflict)
        # Enabling defines the connection by the three fields Keycard names: no secret sent, none kept
        # (seed 002, lines 16-17: client_secret is optional, stored only "if provided").
        fields = {"client_secret": None, **body.model_dump(exclude_unset=True)}
        conn, created = service.upsert_default_connection(uow, ctx, org.id, _core_input(fields, create=True),
                                                          runtime.inspector)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/organizations/{organization_id}/sso-connection"
    return sso_connection_out(conn, org, ctx)


@router.get(PATH, summary="Get the organization's SSO connection")
async def read(organization_id: str, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep) -> dict[str, Any]:
    def found() -> tuple[Organization, Connection]:
        org = service.organization_for(uow, ctx, organization_id)
        return org, _enabled_connection(uow, ctx, org)

    org, conn = await run_reads(runtime, uow, found)
    return sso_connection_out(conn, org, ctx)


@router.patch(PATH, summary="Update the organization's SSO connection")
def update(
    organization_id: str, body: SsoConnectionUpdate, uow: UowDep, ctx: ContextDep, runtime: RuntimeDep
) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    for name in ("client_id", "identifier"):
        if name in fields and fields[name] is None:
            raise InvalidInput(f"{name}: must not be null", field=name)
    with translated_errors(RENAME):
        org = service.organization_for(uow, ctx, organization_id)
        current = _enabled_connection(uow, ctx, org)
        conn = service.update_connection(uow, ctx, org.id, current.id, _core_input(fields, create=False),
                                         runtime.inspector)
    return sso_connection_out(conn, org, ctx)


@router.delete(PATH, status_code=204, summary="Disable SSO for organization")
def disable(organization_id: str, uow: UowDep, ctx: ContextDep) -> Response:
    org = service.organization_for(uow, ctx, organization_id)
    current = _enabled_connection(uow, ctx, org)
    service.delete_connection(uow, ctx, org.id, current.id)
    return Response(status_code=204)


# The page documents no error body: errors keep the native shape.
DIALECT = Dialect("keycard", router, ErrorStyle(prefix=PREFIX, render=native_error_body))
