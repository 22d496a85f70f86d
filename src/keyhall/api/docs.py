"""The interactive API documentation (``/docs``): Swagger UI served from Keyhall's own origin.

Swagger UI's files come from a pinned package (``swagger-ui-bundle-v2``), not a CDN, so the page
works offline and loads nothing from another origin; its Content-Security-Policy (built from the
page by ``keyhall.api.security_headers``) names only ``'self'`` and the page's one inline script.
Only the files the page uses are served (an allow-list, not the package's directory); the online
spec validator, which would fetch a badge from swagger.io, is off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
_ASSET_CACHE = {"Cache-Control": "public, max-age=86400"}


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI for ``app.openapi_url`` at ``/docs``, with its assets under ``/docs/assets``.
    Create the app with ``docs_url=None, redoc_url=None`` (FastAPI's own pages load from a CDN)."""
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"
    folder = Path(str(swagger_ui_path))

    def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png", oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None},
        )

    def docs_asset(name: str) -> FileResponse:
        if name not in _ASSETS:
            raise HTTPException(status_code=404)
        return FileResponse(folder / name, headers=_ASSET_CACHE)

    app.add_api_route(DOCS_PATH, docs_page, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{ASSETS_PATH}/{{name}}", docs_asset, methods=["GET"], include_in_schema=False)
