"""The SAML endpoints of the test IdP, under ``/_dev/idp/saml/``: its metadata, the single sign-on
service (HTTP-Redirect and HTTP-POST bindings) that shows the pick-a-person page, and the step
that answers Keyhall's ACS with a form the person sends on (no script: the pages allow none).
The IdP itself is ``keyhall.dev.saml_idp``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from keyhall.dev.pages import dev_page
from keyhall.dev.people import BY_SUB, PEOPLE
from keyhall.dev.saml_idp import DevSamlIdp, SamlRefused

PREFIX = "/_dev/idp/saml"
MAX_FIELD = 65_536

router = APIRouter(prefix=PREFIX, tags=["development"], include_in_schema=False)


def _idp(request: Request) -> DevSamlIdp | None:
    found: DevSamlIdp | None = request.app.state.dev_saml
    return found


def _refused(message: str, status: int = 400) -> Response:
    return dev_page("idp_error.html", status=status, title="Test identity provider: request refused",
                    message=message)


def _unavailable() -> Response:
    return _refused("The SAML side of the test IdP is off: the xmlsec1 program is not installed "
                    "(Debian package xmlsec1).", 503)


@router.get("/metadata")
def metadata(request: Request) -> Response:
    idp = _idp(request)
    if idp is None:
        return _unavailable()
    return Response(idp.metadata_xml(), media_type="application/samlmetadata+xml")


def _choose(idp: DevSamlIdp, saml_request: str, relay_state: str, binding: str) -> Response:
    try:
        idp.read(saml_request, binding)
    except SamlRefused as exc:
        return _refused(exc.description)
    params = {"SAMLRequest": saml_request, "binding": binding, **({"RelayState": relay_state} if relay_state else {})}
    return dev_page("idp_choose.html", title="Test identity provider", people=PEOPLE, params=params,
                    action=f"{PREFIX}/login", protocol="SAML")


@router.get("/sso")
def sso_redirect(request: Request) -> Response:
    """HTTP-Redirect binding (saml-bindings-2.0-os §3.4)."""
    idp = _idp(request)
    if idp is None:
        return _unavailable()
    query = request.query_params
    return _choose(idp, query.get("SAMLRequest", "")[:MAX_FIELD], query.get("RelayState", "")[:1024], "redirect")


@router.post("/sso")
async def sso_post(request: Request) -> Response:
    """HTTP-POST binding (saml-bindings-2.0-os §3.5)."""
    idp = _idp(request)
    if idp is None:
        return _unavailable()
    form = await request.form()
    return _choose(idp, str(form.get("SAMLRequest", ""))[:MAX_FIELD], str(form.get("RelayState", ""))[:1024], "post")


@router.post("/login")
async def login(request: Request) -> Response:
    """A person was picked: the signed response, in a form the browser posts to Keyhall's ACS."""
    idp = _idp(request)
    if idp is None:
        return _unavailable()
    form = await request.form()
    person = BY_SUB.get(str(form.get("person", "")))
    if person is None:
        return _refused("person: choose one of the people")
    relay_state = str(form.get("RelayState", ""))[:1024] or None
    try:
        authn = idp.read(str(form.get("SAMLRequest", ""))[:MAX_FIELD], str(form.get("binding", "")))
    except SamlRefused as exc:
        return _refused(exc.description)
    answer = idp.respond(authn, person, relay_state)
    return dev_page("idp_post.html", title="Test identity provider", person=person, action=answer.action,
                    fields=answer.fields)
