"""URLs toward identity providers, for ``keyhall.security.outbound`` and ``outbound_async``: parsed
with httpx's own parser (what is checked is what is requested), their syntax checked, shown in
messages without credentials, and the errors that name one."""

from __future__ import annotations

import functools
from typing import Any

import httpx

from keyhall.errors import OutboundFetchError, UnsafeURL

INSECURE_HINT = "KEYHALL_ALLOW_INSECURE_IDP_URLS allows it for development"


@functools.lru_cache(maxsize=512)
def parsed_url(url: str) -> httpx.URL:
    """httpx's parse of ``url``, once per process: a sign-in fetches the same few IdP endpoints as
    every other, and an ``httpx.URL`` is immutable (a URL that does not parse raises, uncached)."""
    return httpx.URL(url)


def checked_syntax(url: str, allow_insecure: bool, field: str | None) -> httpx.URL:
    """Parse with httpx's own parser, so that what is checked is what will be requested."""
    try:
        parsed = parsed_url(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UnsafeURL(f"{shown_url(url)!r} is not a valid URL: {exc}", field=field) from exc
    if parsed.scheme not in {"http", "https"} or not parsed.raw_host:
        raise refusal(f"{shown_url(url)!r} is not an absolute http(s) URL with a host", field, url=shown_url(url))
    if parsed.userinfo:
        raise refusal(f"{shown_url(url)} must not carry a user name or password", field, url=shown_url(url))
    if parsed.scheme != "https" and not allow_insecure:
        raise refusal(f"{shown_url(url)} must use https ({INSECURE_HINT})", field, url=shown_url(url),
                       reason="scheme")
    return parsed


def host_of(parsed: httpx.URL) -> str:
    return parsed.raw_host.decode("ascii")


def port_of(parsed: httpx.URL) -> int:
    return parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)


@functools.lru_cache(maxsize=512)
def shown_url(url: str) -> str:
    """The URL as it may appear in a message: without credentials, and not endlessly long."""
    try:
        parsed = parsed_url(url)
        shown = str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url
    except (httpx.InvalidURL, TypeError, ValueError):
        shown = url.rpartition("@")[2] if "@" in url else url
    return shown if len(shown) <= 200 else shown[:197] + "..."


def fetch_failure(message: str, field: str | None, **details: Any) -> OutboundFetchError:
    return OutboundFetchError(message, field=field, details=details)


def refusal(message: str, field: str | None, **details: Any) -> UnsafeURL:
    return UnsafeURL(message, field=field, details=details)


def redirect_target(current: str, status: int, location: str | None, field: str | None) -> str:
    """The URL a redirect (``status``, ``location``) from ``current`` points to."""
    if not location:
        message = f"GET {shown_url(current)} answered HTTP {status} without a Location header"
        raise fetch_failure(message, field, url=shown_url(current), status=status)
    try:
        return str(httpx.URL(current).join(location))
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise fetch_failure(f"GET {shown_url(current)} redirected to an invalid URL", field,
                            url=shown_url(current)) from exc


def refused_status(method: str, url: str, status: int, reason_phrase: str, field: str | None) -> OutboundFetchError:
    """The error for a non-2xx answer where only 2xx is accepted."""
    shown = f"HTTP {status} {reason_phrase}".rstrip()
    return fetch_failure(f"{method} {shown_url(url)} answered {shown}", field, url=shown_url(url), status=status)


def too_many_redirects(url: str, last: str, max_redirects: int, field: str | None) -> OutboundFetchError:
    """The error when a GET of ``url`` was still redirected (to ``last``) after ``max_redirects`` hops."""
    return fetch_failure(
        f"GET {shown_url(url)} was redirected more than {max_redirects} times (last to {shown_url(last)})",
        field,
        url=shown_url(url),
        max_redirects=max_redirects,
    )
