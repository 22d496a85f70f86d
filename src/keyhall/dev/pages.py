"""Rendering the development-mode pages: templates of ``keyhall/dev/templates`` extending the
hosted pages' ``base.html``, with the hosted pages' security headers (no script, nothing from
another origin)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from keyhall.web.rendering import CSP

_templates = Environment(loader=ChoiceLoader([PackageLoader("keyhall", "dev/templates"),
                                              PackageLoader("keyhall", "web/templates")]),
                         autoescape=select_autoescape(["html"]))


def dev_page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
    })
