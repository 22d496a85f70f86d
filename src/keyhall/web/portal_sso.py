"""The portal's SSO area: the organization's connections, a guided set-up per identity provider,
and a connection's page (the values to paste at the IdP, the form for the IdP's side).

The forms call the same service as ``/v1/.../connections`` (``core.connection_service``), so the
same checks run and their messages name the same fields; a field's message is shown beside it.
Secrets (client secret, bind password) are never written into a page: an empty field keeps them.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.http import request_id, status_for
from keyhall.core import connection_service as service
from keyhall.core import portal
from keyhall.core.connections import Connection, ConnectionInput, connection_urls, sp_entity_id
from keyhall.core.portal import Area, PortalSession
from keyhall.core.presets import preset_for
from keyhall.core.validation import validate_model
from keyhall.core.vocabulary import Protocol, Provider
from keyhall.errors import KeyhallError, NotFound
from keyhall.login import sign_in_test
from keyhall.web.portal import FormDep, context_of, guarded, render
from keyhall.web.portal_guides import GUIDES, Guide

router = APIRouter(prefix=f"{portal.PORTAL_PATH}/sso", tags=["portal"], include_in_schema=False)

FORM_FIELDS: dict[Protocol, tuple[str, ...]] = {
    Protocol.SAML: ("metadata_url", "metadata_xml", "idp_entity_id", "sso_url", "certificate"),
    Protocol.OIDC: ("issuer", "client_id", "client_secret"),
    Protocol.LDAP: ("server", "port", "security", "base_dn", "bind_dn", "bind_password", "user_search_filter"),
}
SECRETS = frozenset({"client_secret", "bind_password"})


def guide_for(conn: Connection) -> Guide:
    """The guide of the connection's provider preset; a generic connection gets its protocol's
    (the stored connection does not say whether AD FS or JumpCloud was picked)."""
    if conn.provider is not Provider.GENERIC:
        for guide in GUIDES.values():
            if guide.protocol is conn.protocol and guide.provider is conn.provider:
                return guide
    return GUIDES[conn.protocol.value]


def sp_values(public_url: str, conn: Connection) -> dict[str, str | None]:
    """The values the IdP is given, for a stored connection or one about to be created."""
    urls = connection_urls(public_url, conn)
    entity = sp_entity_id(public_url, conn) if conn.protocol is Protocol.SAML else None
    return {**urls, "sp_entity_id": entity}


def connection_body(protocol: Protocol, fields: dict[str, str], *, creating: bool,
                    guide: Guide | None) -> dict[str, Any]:
    """The form as a connection input in the API's own names (``saml.metadata_url``...)."""
    body: dict[str, Any] = {}
    if creating and guide is not None:
        body.update(protocol=guide.protocol.value, provider=guide.provider.value)
    if fields.get("name", "").strip() or creating:
        body["name"] = fields.get("name", "").strip()
    if "domains" in fields:
        body["domains"] = [d for d in re.split(r"[\s,]+", fields["domains"]) if d]
    block: dict[str, Any] = {}
    for name in FORM_FIELDS[protocol]:
        value = fields.get(f"{protocol}.{name}", "").strip()
        if not value:
            continue
        if name == "certificate":
            block["certificates"] = [value]
        else:
            block[name] = value
    if protocol is Protocol.SAML and not creating:
        # Metadata from one source at a time: giving the XML drops the URL and the other way round.
        if block.get("metadata_xml"):
            block.setdefault("metadata_url", None)
        elif block.get("metadata_url"):
            block.setdefault("metadata_xml", None)
    if block or creating:
        body[protocol.value] = block
    return body


def errors_of(exc: KeyhallError) -> dict[str, str]:
    """Field → message, for every field the error names (the message stays whole, so it still names it)."""
    found = {str(p.get("field")): str(p.get("message")) for p in exc.details.get("errors", []) if p.get("field")}
    if exc.field:
        found.setdefault(exc.field, exc.message)
    for name in list(found):
        if name.endswith(".certificates") or ".certificates[" in name:
            found.setdefault(name.split(".")[0] + ".certificate", found[name])
    return found


def draft(session: PortalSession, guide: Guide) -> Connection:
    return Connection(id=session.draft_connection_id, organization_id=session.organization_id,
                      protocol=guide.protocol, provider=guide.provider, name="",
                      attribute_mappings=dict(preset_for(guide.provider).attribute_mappings.get(guide.protocol, {})))


def form_values(conn: Connection | None, fields: dict[str, str] | None) -> dict[str, str]:
    """What the form's inputs hold: what was just sent, else the stored settings (never a secret)."""
    if fields is not None:
        return {k: v for k, v in fields.items() if k.rsplit(".", 1)[-1] not in SECRETS and k != "csrf"}
    if conn is None:
        return {}
    values = {"name": conn.name, "domains": ", ".join(conn.domains)}
    for name in FORM_FIELDS[conn.protocol]:
        stored = conn.settings.get(name)
        if name == "certificate":
            certs = conn.settings.get("certificates") or []
            stored = certs[0] if certs else None
        if stored is not None and name not in SECRETS:
            values[f"{conn.protocol}.{name}"] = str(stored)
    return values


def connection_page(session: PortalSession, public_url: str, conn: Connection, guide: Guide, *, creating: bool,
                    fields: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                    message: str | None = None, saved: bool = False, status: int = 200) -> Response:
    base = f"{portal.PORTAL_PATH}/sso"
    action = f"{base}/new/{guide.key}" if creating else f"{base}/connections/{conn.id}"
    return render("portal_connection.html", session, status=status, title=guide.title, guide=guide, conn=conn,
                  creating=creating, values=sp_values(public_url, conn), action=action,
                  attributes=sorted(conn.attribute_mappings.items()), secrets_set=conn.secrets_set(),
                  form=form_values(None if creating else conn, fields), errors=errors or {}, message=message,
                  saved=saved, protocol=conn.protocol.value,
                  test_sign_in_url=None if creating else f"{base}/connections/{conn.id}/test")


@router.get("")
def connections(request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    def build(session: PortalSession) -> Response:
        found = service.list_connections(uow, context_of(request, runtime, session), session.organization_id,
                                         limit=200, cursor=None)
        return render("portal_sso.html", session, title="Single sign-on", connections=found.items,
                      guides=list(GUIDES.values()))
    return guarded(request, uow, runtime, Area.CONNECTIONS, build)


@router.get("/new/{guide_key}")
def new_connection(guide_key: str, request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    def build(session: PortalSession) -> Response:
        guide = _guide(guide_key)
        return connection_page(session, runtime.settings.public_url, draft(session, guide), guide, creating=True)
    return guarded(request, uow, runtime, Area.CONNECTIONS, build)


@router.post("/new/{guide_key}")
def create_connection(guide_key: str, request: Request, uow: UowDep, runtime: RuntimeDep, fields: FormDep) -> Response:
    def build(session: PortalSession) -> Response:
        guide = _guide(guide_key)
        ctx = context_of(request, runtime, session)
        try:
            data = validate_model(ConnectionInput, connection_body(guide.protocol, fields, creating=True, guide=guide))
            conn = portal.create_connection(uow, portal.store_of(uow), session, ctx, data, runtime.inspector)
        except KeyhallError as exc:
            uow.rollback()
            if exc.code == "not_found":
                raise
            return connection_page(session, runtime.settings.public_url, draft(session, guide), guide, creating=True,
                                   fields=fields, errors=errors_of(exc), message=exc.message, status=status_for(exc))
        return RedirectResponse(f"{portal.PORTAL_PATH}/sso/connections/{conn.id}?saved=1", status_code=303)
    return guarded(request, uow, runtime, Area.CONNECTIONS, build, form=fields)


@router.get("/connections/{connection_id}")
def connection(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, saved: int = 0) -> Response:
    def build(session: PortalSession) -> Response:
        ctx = context_of(request, runtime, session)
        conn = service.get_connection(uow, ctx, session.organization_id, connection_id)
        return connection_page(session, runtime.settings.public_url, conn, guide_for(conn), creating=False,
                               saved=bool(saved))
    return guarded(request, uow, runtime, Area.CONNECTIONS, build)


@router.post("/connections/{connection_id}")
def update_connection(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
                      fields: FormDep) -> Response:
    def build(session: PortalSession) -> Response:
        ctx = context_of(request, runtime, session)
        conn = service.get_connection(uow, ctx, session.organization_id, connection_id)
        try:
            body = connection_body(conn.protocol, fields, creating=False, guide=None)
            data = validate_model(ConnectionInput, body)
            service.update_connection(uow, ctx, session.organization_id, conn.id, data, runtime.inspector)
        except KeyhallError as exc:
            uow.rollback()
            if exc.code == "not_found":
                raise
            return connection_page(session, runtime.settings.public_url, conn, guide_for(conn), creating=False,
                                   fields=fields, errors=errors_of(exc), message=exc.message, status=status_for(exc))
        return RedirectResponse(f"{portal.PORTAL_PATH}/sso/connections/{conn.id}?saved=1", status_code=303)
    return guarded(request, uow, runtime, Area.CONNECTIONS, build, form=fields)


@router.post("/connections/{connection_id}/test")
def test_connection(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
                    fields: FormDep) -> Response:
    """Start a test sign-in through the connection (``login.sign_in_test``); this tab then moves on to
    it. Not a redirect: ``form-action 'self'`` forbids a form's redirect chain to leave for the IdP."""
    def build(session: PortalSession) -> Response:
        organization = uow.organizations.get(session.organization_id)
        if organization is None:
            raise NotFound("organization not found")
        conn = service.get_connection(uow, context_of(request, runtime, session), organization.id, connection_id)
        link = sign_in_test.begin(uow, runtime, organization, conn.id, actor=session.actor,
                                  request_id=request_id(request))
        return render("portal_test_start.html", session, title="Test sign-in", test_url=link.url,
                      conn_name=conn.name, expires_at=link.expires_at.strftime("%H:%M UTC"))
    return guarded(request, uow, runtime, Area.CONNECTIONS, build, form=fields)


def _guide(key: str) -> Guide:
    guide = GUIDES.get(key)
    if guide is None:
        raise NotFound("no such identity provider guide")
    return guide
