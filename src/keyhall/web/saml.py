"""SAML endpoints per connection: SP metadata, the Assertion Consumer Service, and the completion step."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.http import request_id
from keyhall.core.ports import UnitOfWork
from keyhall.login import saml as saml_login
from keyhall.login import saml_logout
from keyhall.web.rendering import answer, login_cookie, login_error_page, page

router = APIRouter(tags=["saml"], include_in_schema=False)

MAX_SAML_RESPONSE = 1_048_576  # the request body cap (KEYHALL_MAX_BODY_BYTES) bounds it first anyway


@router.get("/sso/{connection_id}/saml/metadata")
def metadata(connection_id: str, uow: UowDep, runtime: RuntimeDep) -> Response:
    found = saml_login.sp_metadata(uow, saml_login.service_provider(runtime.settings), connection_id,
                                   now=runtime.clock())
    if found is None:
        return Response("no such SAML connection", status_code=404, media_type="text/plain")
    return Response(found.xml, media_type="application/samlmetadata+xml",
                    headers={"Content-Disposition": f'inline; filename="keyhall-{found.connection_id}.xml"'})


@router.post("/sso/{connection_id}/saml/acs")
def acs(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
        SAMLResponse: Annotated[str, Form(max_length=MAX_SAML_RESPONSE)] = "",  # the binding's field names
        RelayState: Annotated[str | None, Form(max_length=4096)] = None) -> Response:
    form = {"SAMLResponse": SAMLResponse, **({"RelayState": RelayState} if RelayState else {})}
    return answer(uow, runtime, request, lambda: saml_login.acs(
        uow, saml_login.service_provider(runtime.settings), connection_id, form,
        issuer=runtime.settings.public_url, now=runtime.clock(), request_id=request_id(request)))


@router.get("/sso/{connection_id}/saml/complete")
def complete(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, step: str = "") -> Response:
    return answer(uow, runtime, request, lambda: saml_login.finish_handoff(
        uow, connection_id, step, browser=login_cookie(request), issuer=runtime.settings.public_url,
        now=runtime.clock(), request_id=request_id(request)))


def _single_logout(connection_id: str, request: Request, uow: UnitOfWork, runtime: Any, *,
                   raw_query: str | None, form: dict[str, str] | None) -> Response:
    try:
        outcome = saml_logout.receive(uow, saml_login.service_provider(runtime.settings), connection_id,
                                      raw_query=raw_query, form=form, now=runtime.clock(),
                                      request_id=request_id(request))
    except saml_logout.SloRefused as exc:
        return login_error_page("This sign-out request cannot be completed", exc.description, status=exc.status)
    if outcome.post_page is not None:
        html, policy = outcome.post_page
        return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-store",
                                           "X-Frame-Options": "DENY"})
    if outcome.redirect_to is not None:
        return RedirectResponse(outcome.redirect_to, status_code=303, headers={"Cache-Control": "no-store"})
    return page("signed_out.html", title="Signed out", application=outcome.application)


@router.get("/sso/{connection_id}/saml/slo")
def slo_redirect(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    """Single Logout by HTTP-Redirect (saml-bindings-2.0-os §3.4): the signature covers the raw query."""
    return _single_logout(connection_id, request, uow, runtime, raw_query=request.url.query, form=None)


@router.post("/sso/{connection_id}/saml/slo")
def slo_post(connection_id: str, request: Request, uow: UowDep, runtime: RuntimeDep,
             SAMLRequest: Annotated[str | None, Form(max_length=MAX_SAML_RESPONSE)] = None,  # the binding's names
             SAMLResponse: Annotated[str | None, Form(max_length=MAX_SAML_RESPONSE)] = None,
             RelayState: Annotated[str | None, Form(max_length=4096)] = None) -> Response:
    """Single Logout by HTTP-POST (saml-bindings-2.0-os §3.5): the XML itself is signed."""
    form = {k: v for k, v in (("SAMLRequest", SAMLRequest), ("SAMLResponse", SAMLResponse),
                              ("RelayState", RelayState)) if v is not None}
    return _single_logout(connection_id, request, uow, runtime, raw_query=None, form=form)
