"""SAML endpoints per connection: SP metadata, the Assertion Consumer Service, and the completion step."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.http import request_id
from keyhall.login import saml as saml_login
from keyhall.web.rendering import answer, login_cookie

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
