"""The request context: the id of the request being served, for log lines and error bodies.

A leaf module: the HTTP middleware (``keyhall.api.http``) sets it per request, and any layer (logs,
the login flow) reads it without importing the web surface.
"""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return request_id_var.get()
