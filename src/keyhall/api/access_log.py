"""One structured access-log line per HTTP request, on the ``keyhall.access`` logger.

The line (``message: "request"``) carries ``method``, ``route`` (the route template, as the
metrics label it: ``/v1/organizations/{org}``, or ``unmatched``), ``status``, ``duration_ms``,
``request_id`` and ``client`` (the address per ``KEYHALL_TRUSTED_PROXIES``, as the rate limits
count it). Never the raw path or the query string: an authorization code, a state or a token can
sit in either. The metrics middleware, which already times each request and knows its route,
calls :func:`log_request` once the response is done; with the logger above INFO nothing is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from starlette.types import Scope

from keyhall.security import forwarded

log = logging.getLogger("keyhall.access")


def _trusted_proxies(scope: Scope) -> Sequence[forwarded.IPNetwork]:
    app = scope.get("app")
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    return getattr(getattr(runtime, "settings", None), "trusted_proxies", ())


def client_of(scope: Scope) -> str:
    """The client address of ``scope``, believing ``X-Forwarded-For`` only from a trusted proxy."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    trusted = _trusted_proxies(scope)
    headers = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"] if trusted else []
    return forwarded.client_address(peer, headers, trusted)


def log_request(scope: Scope, *, method: str, route: str, status: int, seconds: float) -> None:
    """Write the access line of a finished request (nothing when INFO is off for the logger)."""
    if not log.isEnabledFor(logging.INFO):
        return
    state: dict[str, Any] = scope.get("state") or {}
    log.info("request", extra={"request_id": state.get("request_id"), "fields": {
        "method": method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 3),
        "client": client_of(scope),
    }})
