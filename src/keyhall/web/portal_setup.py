"""The portal's other areas: email domains and their DNS proof, SCIM directories (the token shown
once), and the certificates SAML connections trust. Each form calls the service the native API
calls (``core.domain_service``, ``core.directory_service``), with its checks and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.http import status_for
from keyhall.core import certificate_service, directory_service, domain_service, portal
from keyhall.core import connection_service as service
from keyhall.core.connections import sp_entity_id
from keyhall.core.directories import Directory, DirectoryProvider
from keyhall.core.portal import AREAS, Area, PortalSession
from keyhall.errors import KeyhallError
from keyhall.protocols.saml.certificates import parse_certificate
from keyhall.runtime import Runtime
from keyhall.web.portal import FormDep, context_of, guarded, render
from keyhall.web.portal_guides import DIRECTORY_STEPS

router = APIRouter(prefix=portal.PORTAL_PATH, tags=["portal"], include_in_schema=False)


# --- domains ----------------------------------------------------------------------------------


def domains_page(request: Request, uow: Any, runtime: Runtime, session: PortalSession, *, status: int = 200,
                 errors: dict[str, str] | None = None, message: str | None = None, typed: str = "",
                 checked: str | None = None) -> Response:
    ctx = context_of(request, runtime, session)
    found = domain_service.list_domains(uow, ctx, session.organization_id, limit=200, cursor=None).items
    rows = [{"domain": d, "problem": portal.domain_problem(d.last_error)} for d in found]
    return render("portal_domains.html", session, status=status, title="Domains", rows=rows, errors=errors or {},
                  message=message, typed=typed, checked=checked)


@router.get("/domains")
def domains(request: Request, uow: UowDep, runtime: RuntimeDep, checked: str | None = None) -> Response:
    return guarded(request, uow, runtime, Area.DOMAINS,
                   lambda session: domains_page(request, uow, runtime, session, checked=checked))


@router.post("/domains")
def claim_domain(request: Request, uow: UowDep, runtime: RuntimeDep, fields: FormDep) -> Response:
    def build(session: PortalSession) -> Response:
        typed = fields.get("domain", "")
        try:
            domain_service.claim_domain(uow, context_of(request, runtime, session), session.organization_id, typed)
        except KeyhallError as exc:
            uow.rollback()
            return domains_page(request, uow, runtime, session, status=status_for(exc), typed=typed,
                                errors={exc.field or "domain": exc.message}, message=exc.message)
        return RedirectResponse(f"{portal.PORTAL_PATH}/domains", status_code=303)
    return guarded(request, uow, runtime, Area.DOMAINS, build, form=fields)


@router.post("/domains/{domain_id}/verify")
def verify_domain(domain_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, fields: FormDep) -> Response:
    def build(session: PortalSession) -> Response:
        resolver = runtime.txt_lookup()
        try:
            domain_service.verify_domain(uow, context_of(request, runtime, session), session.organization_id,
                                         domain_id, resolver)
        except KeyhallError as exc:
            uow.rollback()
            if exc.code == "not_found":
                raise
            return domains_page(request, uow, runtime, session, status=status_for(exc), message=exc.message)
        return RedirectResponse(f"{portal.PORTAL_PATH}/domains?checked={domain_id}", status_code=303)
    return guarded(request, uow, runtime, Area.DOMAINS, build, form=fields)


# --- directories ------------------------------------------------------------------------------


def scim_base_url(public_url: str, directory: Directory) -> str:
    return f"{public_url.rstrip('/')}/scim/v2/{directory.id}"


def directories_page(request: Request, uow: Any, runtime: Runtime, session: PortalSession, *, status: int = 200,
                     errors: dict[str, str] | None = None, message: str | None = None,
                     token: str | None = None, token_for: str | None = None) -> Response:
    ctx = context_of(request, runtime, session)
    found, counts = directory_service.list_directories(uow, ctx, session.organization_id)
    public_url = runtime.settings.public_url
    rows = [{"directory": d, "counts": counts[d.id], "scim_base_url": scim_base_url(public_url, d),
             "steps": DIRECTORY_STEPS.get(d.provider.value, DIRECTORY_STEPS["generic"])} for d in found]
    return render("portal_directories.html", session, status=status, title="Directory sync", rows=rows,
                  providers=[(p.value, DIRECTORY_STEPS[p.value][0]) for p in DirectoryProvider],
                  errors=errors or {}, message=message, token=token, token_for=token_for)


@router.get("/directories")
def directories(request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    return guarded(request, uow, runtime, Area.DIRECTORIES,
                   lambda session: directories_page(request, uow, runtime, session))


@router.post("/directories")
def create_directory(request: Request, uow: UowDep, runtime: RuntimeDep, fields: FormDep) -> Response:
    def build(session: PortalSession) -> Response:
        try:
            made = directory_service.create_directory(
                uow, context_of(request, runtime, session), session.organization_id,
                name=fields.get("name", "").strip(), provider=fields.get("provider", "generic").strip())
        except KeyhallError as exc:
            uow.rollback()
            return directories_page(request, uow, runtime, session, status=status_for(exc), message=exc.message,
                                    errors={exc.field or "name": exc.message})
        # The token is in this answer only (never stored in clear): no redirect, no cache.
        return directories_page(request, uow, runtime, session, status=201, token=made.token,
                                token_for=made.directory.id)
    return guarded(request, uow, runtime, Area.DIRECTORIES, build, form=fields)


@router.post("/directories/{directory_id}/token")
def rotate_token(directory_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, fields: FormDep) -> Response:
    def build(session: PortalSession) -> Response:
        made = directory_service.rotate_token(uow, context_of(request, runtime, session),
                                              session.organization_id, directory_id)
        return directories_page(request, uow, runtime, session, token=made.token, token_for=made.directory.id)
    return guarded(request, uow, runtime, Area.DIRECTORIES, build, form=fields)


# --- certificates -----------------------------------------------------------------------------


def _expiry(pem: str | None, now: datetime) -> dict[str, Any] | None:
    if not pem:
        return None
    try:
        info = parse_certificate(pem, field="sp_certificate")
    except KeyhallError:
        return None
    return {"subject": info.subject, "not_after": info.not_after, "days_left": info.days_left(now)}


@router.get("/certificates")
def certificates(request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    def build(session: PortalSession) -> Response:
        now = runtime.clock()
        ctx = context_of(request, runtime, session)
        found = service.list_connections(uow, ctx, session.organization_id, limit=200, cursor=None, protocol="saml")
        public_url = runtime.settings.public_url
        rows = []
        for conn in found.items:
            trusted = certificate_service.trusted_certificates(conn)
            for entry in trusted:
                entry["days_left"] = _days_left(entry.get("not_after"), now)
            rows.append({"conn": conn, "trusted": trusted, "sp": _expiry(conn.settings.get("sp_certificate"), now),
                         "sp_entity_id": sp_entity_id(public_url, conn),
                         "sp_metadata_url": f"{public_url.rstrip('/')}/sso/{conn.id}/saml/metadata",
                         "auto_update": bool(conn.settings.get("metadata_url"))
                         and conn.settings.get("auto_update_certificates", True) is not False})
        return render("portal_certificates.html", session, title="Certificates", rows=rows,
                      can_edit=Area.CONNECTIONS in AREAS[session.intent])
    return guarded(request, uow, runtime, Area.CERTIFICATES, build)


def _days_left(not_after: Any, now: datetime) -> int | None:
    if not isinstance(not_after, str):
        return None
    return (datetime.fromisoformat(not_after.replace("Z", "+00:00")) - now).days
