"""Security headers on every response (pure ASGI middleware).

Each header is added only where the response lacks it, so a surface that knows better (the
hosted pages' own Content-Security-Policy, the JWKS's ``Cache-Control: max-age``) keeps its own:

- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``.
- ``Content-Security-Policy``: ``default-src 'none'; frame-ancestors 'none'`` — nothing a
  browser may load or run, and no framing — for every response without a policy of its own,
  except the interactive API docs (below).
- ``Strict-Transport-Security: max-age=31536000; includeSubDomains`` when the public URL is https.
- ``Cache-Control: no-store`` on ``/oauth2/token``, ``/oauth2/userinfo`` and the API prefixes
  (tokens, personal claims, tenants' configuration).

The API docs (Keyhall's ``/docs``, served from its own origin by ``keyhall.api.docs``; for any
other app, FastAPI's ``/docs``, ``/redoc`` and OAuth2 redirect page, which load from a CDN) are HTML
that loads Swagger UI or ReDoc and runs an inline script. Rather than leave them without a policy,
they get one built from the page itself: ``script-src`` names exactly the scripts the page includes
(``'self'`` for Keyhall's own) plus the SHA-256 hash of each inline script (CSP Level 3 §8.3), so
nothing else may run; styles may be inline (both UIs inject styles at run time) or the stylesheets
the page names; images from ``'self'`` and ``data:`` (and the origin of an icon the page names);
``connect-src 'self'`` lets them fetch ``/openapi.json`` and try requests; ReDoc's search worker is
a ``blob:``. The policy follows the page if its asset URLs change, and stays as strict as it
allows (checked in Chromium: Keyhall's /docs renders and loads nothing from another origin,
tests/integration/test_docs_offline.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html.parser import HTMLParser
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"
NO_STORE_PATHS = frozenset({"/oauth2/token", "/oauth2/userinfo"})
_ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"))
_GOOGLE_FONTS_CSS = "https://fonts.googleapis.com"
_GOOGLE_FONTS_FILES = "https://fonts.gstatic.com"


class _DocsPageSources(HTMLParser):
    """The scripts, stylesheets and icons an API docs page includes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.script_urls: list[str] = []
        self.inline_scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.icons: list[str] = []
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "script":
            if named.get("src"):
                self.script_urls.append(named["src"])
            else:
                self._script = []
        elif tag == "link":
            rel = named.get("rel", "").lower().split()
            if "stylesheet" in rel and named.get("href"):
                self.stylesheets.append(named["href"])
            elif "icon" in rel and named.get("href"):
                self.icons.append(named["href"])

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.inline_scripts.append("".join(self._script))
            self._script = None


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def _source(url: str) -> str:
    """The CSP source expression for a URL as a page wrote it (CSP Level 3 §2.3.1): an absolute URL
    without its query (a full path matches only that file; the query is not matched), its bare
    origin when the path holds a character that would end the expression or the policy (``;``,
    ``,``, white space), and ``'self'`` for a relative URL."""
    origin = _origin(url)
    if origin is None:
        return "'self'"
    path = urlsplit(url).path
    if any(c in ";,'" or c.isspace() for c in path):
        return origin
    return origin + path


def _sources(urls: Iterable[str]) -> list[str]:
    return sorted({_source(url) for url in urls})


def docs_page_csp(html: str) -> str:
    """A Content-Security-Policy that lets this docs page run what it includes, and nothing else."""
    page = _DocsPageSources()
    page.feed(html)
    page.close()
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
              for s in page.inline_scripts]
    fonts = [_GOOGLE_FONTS_FILES] if any(_origin(u) == _GOOGLE_FONTS_CSS for u in page.stylesheets) else []
    icons = sorted({o for o in map(_origin, page.icons) if o})
    directives = [
        "default-src 'none'",
        " ".join(["script-src", *_sources(page.script_urls), *hashes]),
        " ".join(["style-src", *_sources(page.stylesheets), "'unsafe-inline'"]),
        " ".join(["img-src 'self' data:", *icons]),  # Swagger UI's own icons are data: URLs
        " ".join(["font-src 'self' data:", *fonts]),
        "connect-src 'self'",
        "worker-src blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
    return "; ".join(directives)


class SecurityHeadersMiddleware:
    """Add the security headers a response lacks (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, https: bool, docs_paths: Iterable[str] = (),
                 no_store_prefixes: Iterable[str] = ("/v1/",)) -> None:
        self.app = app
        self.https = https
        self.docs_paths = frozenset(docs_paths)
        self.no_store_prefixes = tuple(no_store_prefixes)

    def _wanted(self, path: str) -> list[tuple[bytes, bytes]]:
        wanted = list(_ALWAYS)
        if self.https:
            wanted.append((b"strict-transport-security", HSTS.encode()))
        if path in NO_STORE_PATHS or path.startswith(self.no_store_prefixes):
            wanted.append((b"cache-control", b"no-store"))
        return wanted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        wanted = self._wanted(path)
        held: Message | None = None  # a docs page's start, held until its body gives its policy
        body: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _value in headers}
                headers += [(name, value) for name, value in wanted if name not in present]
                message["headers"] = headers
                if b"content-security-policy" not in present:
                    if path in self.docs_paths and _is_html(headers):
                        held = message
                        return
                    headers.append((b"content-security-policy", STRICT_CSP.encode()))
            elif message["type"] == "http.response.body" and held is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                content = b"".join(body)
                csp = docs_page_csp(content.decode("utf-8", errors="replace"))
                held["headers"].append((b"content-security-policy", csp.encode()))
                start, held = held, None
                await send(start)
                await send({"type": "http.response.body", "body": content})
                return
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"text/html"
    return False


def install_security_headers(app: FastAPI, *, public_url: str, no_store_prefixes: Iterable[str] = ("/v1/",),
                             docs_paths: Iterable[str] | None = None) -> None:
    """Add the middleware; HSTS when ``public_url`` is https; the docs pages (``docs_paths``, by
    default FastAPI's own docs URLs of the app) get the docs policy."""
    docs = list(docs_paths) if docs_paths is not None else [
        p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p]
    app.add_middleware(SecurityHeadersMiddleware, https=public_url.lower().startswith("https://"),
                       docs_paths=docs, no_store_prefixes=no_store_prefixes)
