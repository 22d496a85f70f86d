"""SAML endpoints per connection: SP metadata, the Assertion Consumer Service, and the completion step."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.http import request_id
from keyhall.api.pages import LOGIN_COOKIE, _fail, _uow
from keyhall.core.connections import connection_urls, sp_entity_id
from keyhall.core.vocabulary import Protocol
from keyhall.login import flow
from keyhall.login import saml as saml_login
from keyhall.login.flow import LoginFailed
from keyhall.protocols.saml.sp_metadata import sp_metadata_xml

router = APIRouter(tags=["saml"], include_in_schema=False)

MAX_SAML_RESPONSE = 1_048_576  # the request body cap (KEYHALL_MAX_BODY_BYTES) bounds it first anyway


def service_provider(runtime: Any) -> saml_login.ServiceProvider:
    return saml_login.ServiceProvider(public_url=runtime.settings.public_url,
                                      clock_skew_seconds=runtime.settings.clock_skew_seconds)


@router.get("/sso/{connection_id}/saml/metadata")
def metadata(connection_id: str, uow: UowDep, runtime: RuntimeDep) -> Response:
    conn = uow.connections.get_any(connection_id)
    if conn is None or conn.protocol is not Protocol.SAML:
        return Response("no such SAML connection", status_code=404, media_type="text/plain")
    public = runtime.settings.public_url
    cert = conn.settings.get("sp_certificate")
    xml = sp_metadata_xml(
        entity_id=sp_entity_id(public, conn), acs_url=str(connection_urls(public, conn)["acs_url"]),
        name_id_formats=[str(f) for f in [conn.settings.get("name_id_format")] if f],
        signing_cert_pem=cert, encryption_cert_pem=cert,
        authn_requests_signed=bool(conn.settings.get("sign_requests")),
        valid_until=runtime.clock() + timedelta(days=7),
    )
    return Response(xml, media_type="application/samlmetadata+xml",
                    headers={"Content-Disposition": f'inline; filename="keyhall-{conn.id}.xml"'})


@router.post("/sso/{connection_id}/saml/acs")
def acs(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
        SAMLResponse: Annotated[str, Form(max_length=MAX_SAML_RESPONSE)] = "",  # the binding's field names
        RelayState: Annotated[str | None, Form(max_length=4096)] = None) -> Response:
    provider_uow = _uow(uow)
    now = runtime.clock()
    form = {"SAMLResponse": SAMLResponse, **({"RelayState": RelayState} if RelayState else {})}
    try:
        conn, user, trip, authn = saml_login.receive(provider_uow, service_provider(runtime), connection_id, form,
                                                     now)
        if trip is not None and trip.parent_id:
            step = saml_login.handoff(provider_uow, conn, user, trip.parent_id, now, authn)
            provider_uow.commit()
            return RedirectResponse(f"/sso/{conn.id}/saml/complete?step={step}", status_code=303)
        # IdP-initiated (opted in per connection): answer the configured application directly.
        unsolicited = saml_login.idp_initiated_request(conn)
        app = provider_uow.applications.get(unsolicited.client_id)
        if app is None or unsolicited.redirect_uri not in app.redirect_uris:
            raise LoginFailed("IdP-initiated sign-in is misconfigured for this connection (unknown application "
                              "or redirect URI).", reason="idp_initiated_misconfigured", connection=conn)
        parent = flow.start(provider_uow, unsolicited, now)
        url = flow.complete(provider_uow, parent.id, user, connection=conn, authn=authn,
                            issuer=runtime.settings.public_url, now=now, request_id=request_id(request))
        return RedirectResponse(url, status_code=303)
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)


@router.get("/sso/{connection_id}/saml/complete")
def complete(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, step: str = "") -> Response:
    provider_uow = _uow(uow)
    now = runtime.clock()
    try:
        handed = saml_login.take_handoff(provider_uow, connection_id, step[:64], now)
        provider_uow.commit()
        conn = provider_uow.connections.get_any(connection_id)
        cookie = request.cookies.get(LOGIN_COOKIE)
        if not cookie or not secrets.compare_digest(cookie, str(handed.parent_id)):
            raise LoginFailed("This sign-in was not started in this browser. Go back to your application and start "
                              "again.", reason="transaction_not_bound", connection=conn)
        user = provider_uow.users.get(str(handed.data["user_id"]))
        if conn is None or user is None:
            raise LoginFailed("This sign-in can no longer finish.", reason="state_invalid")
        url = flow.complete(provider_uow, str(handed.parent_id), user, connection=conn,
                            authn=saml_login.handed_authentication(handed), issuer=runtime.settings.public_url,
                            now=now, request_id=request_id(request))
    except LoginFailed as exc:
        return _fail(provider_uow, runtime, request, exc)
    response = RedirectResponse(url, status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response
