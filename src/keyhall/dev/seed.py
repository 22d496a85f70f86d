"""The demo tenant of development mode, made on start-up through the same core services the API
uses (audited as the ``key:dev-seed`` instance admin): the organization ``demo``, a public
application for the example product (``/_dev/app/callback``) and two connections to the test IdP:
OIDC (the organization's default) and, when the SAML side is on, SAML from the IdP's metadata.
Idempotent: what exists is kept, and only what follows the public URL (the product's redirect
URI, the IdP's issuer and metadata) is brought up to date."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyhall.core import application_service, connection_service, org_service
from keyhall.core.access import Principal
from keyhall.core.connection_service import Context
from keyhall.core.connections import ConnectionInput
from keyhall.core.ports import ConnectionFilter, IdPInspector, UnitOfWork
from keyhall.dev.app import Demo
from keyhall.dev.idp import DevIdp
from keyhall.dev.saml_idp import ATTRIBUTE_NAMES, DevSamlIdp
from keyhall.errors import Conflict
from keyhall.runtime import Runtime

ORGANIZATION = "demo"
APPLICATION = "Example product (development mode)"
CONNECTION = "Test IdP"
SAML_CONNECTION = "Test IdP (SAML)"
IDP_CLIENT_ID = "keyhall-demo"
SEEDER = Principal(key_id="dev-seed", organization_id=None, role=None, instance_admin=True)


class KnownIdp:
    """The inspector for the seeded connections: the test IdP's OIDC metadata is known without a
    request (the server that answers it is not listening yet); its SAML metadata is handed over as
    XML, which Keyhall's own inspector reads without a request."""

    def __init__(self, idp: DevIdp, inspector: IdPInspector) -> None:
        self.idp, self.inspector = idp, inspector

    def inspect_oidc(self, settings: dict[str, Any]) -> dict[str, Any]:
        return self.idp.metadata()

    def inspect_saml(self, settings: dict[str, Any], now: datetime) -> dict[str, Any]:
        if not settings.get("metadata_xml"):
            raise ValueError("the seeded SAML connection is made from the test IdP's metadata XML")
        return self.inspector.inspect_saml(settings, now)

    def inspect_ldap(self, settings: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError("no LDAP connection is seeded")


def seed(runtime: Runtime, idp: DevIdp, saml: DevSamlIdp | None = None) -> Demo:
    """Make (or bring up to date) the demo tenant; returns what the example product needs."""
    try:
        return _seed(runtime, idp, saml)
    except Conflict:
        return _seed(runtime, idp, saml)  # another worker seeded meanwhile: read what it made


def _seed(runtime: Runtime, idp: DevIdp, saml: DevSamlIdp | None) -> Demo:
    public_url = runtime.settings.public_url
    redirect_uri = Demo(public_url, "", ORGANIZATION).redirect_uri
    inspector = KnownIdp(idp, runtime.inspector)
    with runtime.database.unit_of_work() as uow:
        ctx = Context(principal=SEEDER, request_id=None, now=runtime.clock())
        if uow.organizations.get(ORGANIZATION) is None:
            org_service.create_organization(uow, ctx, "Demo organization", ORGANIZATION)
        client_id = _application(uow, ctx, redirect_uri)
        oidc_id = _oidc_connection(uow, ctx, idp, inspector)
        saml_id = _saml_connection(uow, ctx, saml, inspector) if saml is not None else None
    return Demo(public_url=public_url, client_id=client_id, organization=ORGANIZATION, oidc_connection=oidc_id,
                saml_connection=saml_id)


def _application(uow: UnitOfWork, ctx: Context, redirect_uri: str) -> str:
    apps = uow.applications
    found = [a for a in application_service.list_applications(apps, ctx) if a.name == APPLICATION]
    if not found:
        app, _secret = application_service.create_application(uow, apps, ctx, name=APPLICATION,
                                                               redirect_uris=[redirect_uri], public=True)
        return app.id
    if found[0].redirect_uris != [redirect_uri]:
        application_service.update_application(uow, apps, ctx, found[0].id, name=None, redirect_uris=[redirect_uri])
    return found[0].id


def _oidc_connection(uow: UnitOfWork, ctx: Context, idp: DevIdp, inspector: KnownIdp) -> str:
    oidc = {"issuer": idp.issuer, "client_id": IDP_CLIENT_ID, "scope": "openid email profile"}
    found = connection_service.find_connections(uow, ctx, ORGANIZATION, ConnectionFilter(name=CONNECTION), limit=1)
    if not found.items:
        data = ConnectionInput(protocol="oidc", name=CONNECTION, display_name="Test IdP (development mode)",
                               oidc=oidc)
        return connection_service.create_connection(uow, ctx, ORGANIZATION, data, inspector, make_default=True).id
    if found.items[0].settings.get("issuer") != idp.issuer:
        connection_service.update_connection(uow, ctx, ORGANIZATION, found.items[0].id,
                                             ConnectionInput(oidc=oidc), inspector)
    return found.items[0].id


def _saml_connection(uow: UnitOfWork, ctx: Context, saml: DevSamlIdp, inspector: KnownIdp) -> str:
    settings = {"metadata_xml": saml.metadata_xml()}
    found = connection_service.find_connections(uow, ctx, ORGANIZATION, ConnectionFilter(name=SAML_CONNECTION),
                                                limit=1)
    if not found.items:
        data = ConnectionInput(protocol="saml", name=SAML_CONNECTION, display_name="Test IdP, SAML (development mode)",
                               saml=settings, attribute_mappings=dict(ATTRIBUTE_NAMES))
        return connection_service.create_connection(uow, ctx, ORGANIZATION, data, inspector).id
    conn = found.items[0]
    if (conn.discovered or {}).get("idp_entity_id") != saml.entity_id:
        connection_service.update_connection(uow, ctx, ORGANIZATION, conn.id, ConnectionInput(saml=settings),
                                             inspector)
    return conn.id
