"""The app-facing OpenID provider over HTTP: discovery, JWKS, authorize, token, revocation, userinfo."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from keyhall.api.deps import RuntimeDep, UowDep, in_read_only_unit
from keyhall.api.http import ErrorStyle, register_error_style
from keyhall.core.applications import Application
from keyhall.core.ports import UnitOfWork
from keyhall.errors import KeyhallError
from keyhall.login import entry
from keyhall.provider import grants, revocation, signing
from keyhall.provider.userinfo import InvalidAccessToken, userinfo_claims
from keyhall.security.text import has_control
from keyhall.web import oauth_docs
from keyhall.web.rendering import LOGIN_COOKIE, answer, render, set_login_cookie

router = APIRouter(tags=["openid provider"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


#: Endpoints a product's back channel calls: every error they answer, including the ones raised
#: before the handler runs (an oversized body, too many form fields, a database that is down),
#: is an RFC 6749 §5.2 error document (RFC 7009 §2.2.1 for revocation).
BACK_CHANNEL_PATHS = ("/oauth2/token", "/oauth2/revoke")


def rfc6749_error_body(status: int, exc: KeyhallError) -> dict[str, Any]:
    """``{"error", "error_description"}`` for an error the framework or a lower layer raised."""
    if status == 503:
        error = "temporarily_unavailable"
    elif status >= 500:
        error = "server_error"
    elif status == 401:
        error = "invalid_client"
    else:
        error = "invalid_request"
    return {"error": error, "error_description": exc.message}


def register_error_styles() -> None:
    for path in BACK_CHANNEL_PATHS:
        register_error_style(ErrorStyle(prefix=path, render=rfc6749_error_body))


@router.get("/.well-known/openid-configuration")
async def discovery(runtime: RuntimeDep) -> dict[str, Any]:
    """The provider's metadata: the same document for as long as the public URL is the same (built
    once, here on the event loop: no I/O, no hand-off to a thread)."""
    return _discovery_document(runtime.settings.public_url)


@functools.lru_cache(maxsize=4)
def _discovery_document(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "jwks_uri": f"{issuer}/oauth2/jwks",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": list(signing.SUPPORTED_ALGS),
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid",
                             "email", "email_verified", "name", "given_name", "family_name", "preferred_username",
                             "picture", "locale", "groups", "org_id", "org_slug", "connection_id"],
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


@router.get("/oauth2/jwks")
async def jwks(runtime: RuntimeDep) -> JSONResponse:
    """Every product fetches this, unauthenticated: one read in a read-only transaction (no write
    lock taken or waited for, no private key opened; on SQLite on the event loop). Only the first
    call on a new database makes the signing keys, in a write."""
    now = runtime.clock()
    document = await in_read_only_unit(runtime, lambda uow: signing.published_jwks(uow.signing_keys, now))
    if document is None:
        document = await run_in_threadpool(_jwks_making_keys, runtime)
    return JSONResponse(document, headers={"Cache-Control": "max-age=300"})


def _jwks_making_keys(runtime: Any) -> dict[str, Any]:
    with runtime.database.unit_of_work() as uow:
        document = signing.jwks(uow.signing_keys, runtime.clock())
        uow.commit()
    return document


@router.get("/oauth2/authorize", openapi_extra=oauth_docs.AUTHORIZE)
def authorize(request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    outcome = entry.authorize(uow, runtime, dict(request.query_params))
    if not isinstance(outcome, entry.Authorizing):
        return render(outcome)
    response = answer(uow, runtime, request, outcome.first_step)
    set_login_cookie(response, outcome.tx_id, runtime.settings.public_url)
    return response


def _token_error(exc: grants.TokenError, *, basic: bool) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401 and basic:
        headers["WWW-Authenticate"] = 'Basic realm="keyhall"'
    return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status,
                        headers=headers)


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None, str, bool]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except ValueError:  # binascii.Error, UnicodeDecodeError, or a header that is not ASCII at all
            raise grants.TokenError("invalid_client", "malformed Basic credentials", status=401) from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise grants.TokenError("invalid_client", "malformed Basic credentials", status=401)
        if form.get("client_secret"):
            raise grants.TokenError("invalid_request", "use one client authentication method")
        return unquote(client_id), unquote(secret), "client_secret_basic", True
    if form.get("client_secret"):
        return form.get("client_id"), form["client_secret"], "client_secret_post", False
    return form.get("client_id"), None, "none", False


async def _form(request: Request) -> dict[str, str] | JSONResponse:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return _token_error(grants.TokenError("invalid_request", "send the body as application/x-www-form-urlencoded"),
                            basic=False)
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    if any(has_control(k) or has_control(v) for k, v in form.items()):
        return _token_error(grants.TokenError("invalid_request", "parameters must not contain control characters"),
                            basic=False)
    return form


async def _form_endpoint(request: Request, runtime: Any,
                         handler: Callable[[Request, Any, dict[str, str]], Response]) -> Response:
    """Read the form (RFC 6749 §3.2: urlencoded), then run ``handler`` on a worker thread."""
    form = await _form(request)
    if isinstance(form, JSONResponse):
        return form
    return await run_in_threadpool(handler, request, runtime, form)


@router.post("/oauth2/token", openapi_extra=oauth_docs.TOKEN)
async def token(request: Request, runtime: RuntimeDep) -> Response:
    return await _form_endpoint(request, runtime, _token_sync)


@router.post("/oauth2/revoke", openapi_extra=oauth_docs.REVOKE)
async def revoke(request: Request, runtime: RuntimeDep) -> Response:
    """RFC 7009: the client authenticates as at the token endpoint; 200 with an empty body."""
    return await _form_endpoint(request, runtime, _revoke_sync)


def _max_lifetime(runtime: Any) -> timedelta:
    return timedelta(seconds=runtime.settings.refresh_token_max_lifetime_seconds)


def _uses_basic(request: Request) -> bool:
    """Whether the client authenticates with HTTP Basic (its 401s then carry ``WWW-Authenticate``)."""
    return request.headers.get("authorization", "").lower().startswith("basic ")


def _authenticated_client(uow: UnitOfWork, request: Request, form: dict[str, str]) -> Application:
    """The client, authenticated as RFC 6749 §2.3 says; raises ``TokenError``."""
    client_id, secret, method, _basic = _client_credentials(request, form)
    app = uow.applications.get(client_id[:64], shared=True) if client_id else None  # read, never changed
    return grants.authenticate_client(app, secret, method_used=method)


def _revoke_sync(request: Request, runtime: Any, form: dict[str, str]) -> Response:
    basic = _uses_basic(request)
    with runtime.database.unit_of_work() as uow:
        try:
            app = _authenticated_client(uow, request, form)
            revocation.revoke(uow, app, token=form.get("token"), token_type_hint=form.get("token_type_hint"),
                              issuer=runtime.settings.public_url, now=runtime.clock())
        except grants.TokenError as exc:
            return _token_error(exc, basic=basic)
    return Response(status_code=200, headers=NO_STORE)


def _token_sync(request: Request, runtime: Any, form: dict[str, str]) -> JSONResponse:
    basic = _uses_basic(request)
    with runtime.database.unit_of_work() as uow:
        try:
            app = _authenticated_client(uow, request, form)
            grant_type = form.get("grant_type")
            now, issuer = runtime.clock(), runtime.settings.public_url
            if grant_type == "authorization_code":
                body = grants.exchange_code(uow, app, code=form.get("code"),
                                            redirect_uri=form.get("redirect_uri"),
                                            code_verifier=form.get("code_verifier"), issuer=issuer, now=now,
                                            max_lifetime=_max_lifetime(runtime))
            elif grant_type == "refresh_token":
                body = grants.refresh(uow, app, refresh_token=form.get("refresh_token"),
                                      scope=form.get("scope"), issuer=issuer, now=now,
                                      max_lifetime=_max_lifetime(runtime))
            else:
                raise grants.TokenError("unsupported_grant_type", "grant_type must be authorization_code or "
                                        "refresh_token")
        except grants.TokenError as exc:
            return _token_error(exc, basic=basic)
    return JSONResponse(body, headers=NO_STORE)


@router.get("/oauth2/userinfo", openapi_extra=oauth_docs.USERINFO)
async def userinfo(request: Request, runtime: RuntimeDep) -> JSONResponse:
    return await _userinfo(request, runtime)


@router.post("/oauth2/userinfo", openapi_extra=oauth_docs.USERINFO)
async def userinfo_post(request: Request, runtime: RuntimeDep) -> JSONResponse:
    return await _userinfo(request, runtime)


async def _userinfo(request: Request, runtime: Any) -> JSONResponse:
    """Reads only (the token's keys, its revocation, its sign-in's standing): a read-only unit of work."""
    header = request.headers.get("authorization", "")
    token_value = header[7:].strip() if header.lower().startswith("bearer ") else ""
    issuer, now, max_lifetime = runtime.settings.public_url, runtime.clock(), _max_lifetime(runtime)
    try:
        body = await in_read_only_unit(runtime, lambda uow: userinfo_claims(
            uow, token_value, issuer=issuer, now=now, max_lifetime=max_lifetime))
    except InvalidAccessToken:
        return JSONResponse({"error": "invalid_token"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return JSONResponse(body, headers=NO_STORE)


__all__ = ["LOGIN_COOKIE", "router"]
