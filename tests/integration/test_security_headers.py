"""Security headers on every surface: the JSON APIs, the hosted pages, the OAuth endpoints, the
API docs (a policy built from the page) and HSTS only behind an https public URL."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from keyhall.api.security_headers import (
    STRICT_CSP,
    SecurityHeadersMiddleware,
    docs_page_csp,
    install_security_headers,
)
from keyhall.app import create_app
from keyhall.runtime import Runtime
from keyhall.web.rendering import CSP as PAGES_CSP
from tests.support.api import Keyhall, auth
from tests.support.settings import make_settings

HSTS = "max-age=31536000; includeSubDomains"


def assert_basics(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in response.headers
    assert len(response.headers.get_list("content-security-policy")) == 1


def directives(csp: str) -> dict[str, list[str]]:
    parsed = {}
    for part in csp.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


@pytest.fixture(scope="module")
def https_client(runtime: Runtime, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(Path(tmp_path_factory.mktemp("https-data")), database_url,
                             public_url="https://keyhall.example")
    with TestClient(create_app(settings, runtime), base_url="https://keyhall.example",
                    raise_server_exceptions=False) as client:
        yield client


def test_json_api_responses(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Headers")
    for response in (
        keyhall.client.get("/v1/organizations", headers=auth(keyhall.instance_token)),
        keyhall.client.get(f"/v1/organizations/{tenant.id}/connections", headers=auth(tenant.viewer)),
        keyhall.client.get(f"/v1/organizations/{tenant.id}/connections", headers=auth("wrong")),  # 401
        keyhall.client.get(f"/v1/organizations/{tenant.id}/connections/nope", headers=auth(tenant.owner)),  # 404
        keyhall.client.post("/v1/organizations", content=b"x" * 10, headers={"content-type": "text/plain"}),  # 415
    ):
        assert_basics(response)
        assert response.headers["content-security-policy"] == STRICT_CSP
        assert response.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in response.headers  # the public URL is http
    assert keyhall.client.get("/v1/organizations").status_code == 401


def test_seed_dialect_responses_are_not_stored_either(keyhall: Keyhall) -> None:
    tenant = keyhall.tenant("Dialect headers")
    response = keyhall.client.get("/api/v1/sso/configurations", headers=auth(tenant.owner))
    assert response.status_code == 200, response.text
    assert_basics(response)
    assert response.headers["cache-control"] == "no-store"


def test_other_responses_get_the_strict_policy(keyhall: Keyhall) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/.well-known/openid-configuration", "/no/such/path"):
        response = keyhall.client.get(path)
        assert_basics(response)
        assert response.headers["content-security-policy"] == STRICT_CSP, path
        assert response.headers.get("cache-control") != "no-store", path
    jwks = keyhall.client.get("/oauth2/jwks")
    assert jwks.headers["cache-control"] == "max-age=300"  # its own caching is kept


def test_hosted_pages_keep_their_own_policy(keyhall: Keyhall) -> None:
    page = keyhall.client.get("/oauth2/authorize", params={"client_id": "nobody", "redirect_uri": "https://x/cb",
                                                           "response_type": "code", "scope": "openid"})
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert_basics(page)
    assert page.headers["content-security-policy"] == PAGES_CSP
    assert page.headers["cache-control"] == "no-store"
    login = keyhall.client.get("/login")
    assert login.headers["content-type"].startswith("text/html")
    assert_basics(login)
    assert login.headers["content-security-policy"] == PAGES_CSP


def test_token_and_userinfo_endpoints_are_never_cached(keyhall: Keyhall) -> None:
    token = keyhall.client.post("/oauth2/token", data={"grant_type": "password", "username": "a", "password": "b"})
    assert token.status_code in (400, 401)
    userinfo = keyhall.client.get("/oauth2/userinfo")
    assert userinfo.status_code == 401
    userinfo_post = keyhall.client.post("/oauth2/userinfo", headers=auth("not-a-token"))
    assert userinfo_post.status_code == 401
    for response in (token, userinfo, userinfo_post):
        assert_basics(response)
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-security-policy"] == STRICT_CSP


def test_hsts_only_behind_an_https_public_url(https_client: TestClient, keyhall: Keyhall) -> None:
    for path in ("/healthz", "/v1/organizations", "/login", "/docs", "/oauth2/jwks"):
        response = https_client.get(path)
        assert_basics(response)
        assert response.headers["strict-transport-security"] == HSTS, path
        assert "strict-transport-security" not in keyhall.client.get(path).headers, path


def inline_script_hashes(html: str) -> list[str]:
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts]


def test_swagger_ui_gets_a_policy_for_exactly_what_it_loads(keyhall: Keyhall) -> None:
    docs = keyhall.client.get("/docs")
    assert docs.status_code == 200
    assert_basics(docs)
    policy = directives(docs.headers["content-security-policy"])
    external = re.findall(r'<script src="([^"]+)"', docs.text)
    hashes = inline_script_hashes(docs.text)
    assert external == ["/docs/assets/swagger-ui-bundle.js"]  # from Keyhall itself, not a CDN
    assert hashes
    assert sorted(policy["script-src"]) == sorted(["'self'", *hashes])
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    stylesheets = re.findall(r'<link type="text/css" rel="stylesheet" href="([^"]+)"', docs.text)
    assert stylesheets == ["/docs/assets/swagger-ui.css"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["default-src"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]  # /openapi.json and "Try it out"
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert "https:" not in docs.headers["content-security-policy"]
    assert int(docs.headers["content-length"]) == len(docs.content)  # the held body went out whole


def test_fastapis_cdn_pages_are_not_served(keyhall: Keyhall) -> None:
    for path in ("/redoc", "/docs/oauth2-redirect", "/docs/assets/index.html", "/docs/assets/../__init__.py"):
        assert keyhall.client.get(path).status_code == 404, path
    asset = keyhall.client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith("text/javascript")


def test_docs_policy_cannot_be_widened_by_what_the_page_says() -> None:
    html = ('<script src="https://cdn.example/a.js; script-src *"></script><script src="/local.js"></script>'
            '<script src="https://cdn.example/b.js?x=1,2"></script>'
            '<link rel="stylesheet" href="https://cdn.example/a b.css">')
    csp = docs_page_csp(html)
    policy = directives(csp)
    assert policy["script-src"] == ["'self'", "https://cdn.example", "https://cdn.example/b.js"]
    assert policy["style-src"] == ["https://cdn.example", "'unsafe-inline'"]
    assert "*" not in csp
    assert "," not in csp


def test_other_html_without_a_policy_gets_the_strict_one() -> None:
    app = FastAPI()

    @app.get("/plain-html")
    def plain_html() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>")

    @app.get("/text")
    def text() -> PlainTextResponse:
        return PlainTextResponse("hi", headers={"Content-Security-Policy": "sandbox"})

    install_security_headers(app, public_url="http://127.0.0.1:8000")
    with TestClient(app) as client:
        assert client.get("/plain-html").headers["content-security-policy"] == STRICT_CSP
        assert client.get("/text").headers["content-security-policy"] == "sandbox"
        docs = client.get("/docs")
        assert "script-src https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js 'sha256-" in (
            docs.headers["content-security-policy"])
        assert "cache-control" not in docs.headers


def test_a_docs_page_sent_in_pieces_is_hashed_whole() -> None:
    script = "console.log('one piece');"
    chunks = [b"<html><script>console.log(", b"'one piece');</script></html>"]

    async def docs_in_pieces(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    app = SecurityHeadersMiddleware(docs_in_pieces, https=False, docs_paths=["/docs"])
    response = TestClient(app).get("/docs")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert response.text == b"".join(chunks).decode()
    assert directives(response.headers["content-security-policy"])["script-src"] == [f"'sha256-{digest}'"]


def test_an_unexpected_error_is_a_500_that_keeps_request_id_and_headers(runtime: Runtime) -> None:
    app = create_app(runtime.settings, runtime)

    @app.get("/v1/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("kaboom")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/boom", headers={"X-Request-ID": "req-boom"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "kaboom" not in response.text
    assert response.headers["x-request-id"] == "req-boom"
    assert response.headers["x-content-type-options"] == "nosniff"
