"""Outbound HTTP toward identity providers from the event loop: the calls a sign-in makes while it
waits for its IdP (the OIDC token exchange, the JWK Set, UserInfo), under the same guard, limits and
messages as :mod:`keyhall.security.outbound`, without holding a thread while the IdP answers.

- :func:`fetch` and :func:`post_form` behave as their namesakes there: the URL's syntax is checked
  first; every new connection's addresses are resolved and judged at connect time by the policy's
  rules (``outbound.vetter``), in a worker thread since resolving blocks, and the connection goes to
  one of those addresses (``keyhall.security.guarded_async``); redirects of a GET are followed by
  hand, each target checked again, a caller's headers only to the first URL's origin; a POST never
  follows; each call holds one of its origin's places in ``policy.calls`` (IdPBusy when none is free),
  has connect and read timeouts and an overall deadline, and refuses a body past ``policy.max_bytes``.
- Connections are kept alive in one pool per event loop and trust store, kept on the policy and
  closed with the app (:func:`close_pools`, at its lifespan's end); no cookie is ever kept or sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from urllib.parse import urlencode

import httpcore
import httpx

from keyhall.security.bulkhead import origin_of
from keyhall.security.guarded_async import guarded_pool
from keyhall.security.outbound import (
    DEADLINE_FACTOR,
    REDIRECT_STATUSES,
    USER_AGENT,
    FetchedDocument,
    OutboundPolicy,
    call_scope,
    check_body_headers,
    check_body_so_far,
    describe_exception,
    trust_store,
    validators,
    vetter,
)
from keyhall.security.outbound_urls import (
    checked_syntax,
    fetch_failure,
    redirect_target,
    refused_status,
    shown_url,
    too_many_redirects,
)

log = logging.getLogger(__name__)

_BASE_HEADERS = ((b"Accept-Encoding", b"identity"), (b"User-Agent", USER_AGENT.encode("ascii")))
_FORM = b"application/x-www-form-urlencoded"


async def fetch(url: str, policy: OutboundPolicy, *, accept: str = "*/*", field: str | None = None,
                headers: Mapping[str, str] | None = None) -> FetchedDocument:
    """GET the URL under the policy; raise UnsafeURL or OutboundFetchError (a non-2xx answer too)."""
    deadline = time.monotonic() + policy.timeout * DEADLINE_FACTOR
    with policy.calls.slot(url, field=field), call_scope(field, deadline):
        pool = _pool(policy)
        current = url
        for _hop in range(policy.max_redirects + 1):
            target = checked_syntax(current, policy.allow_insecure, field)
            same_origin = origin_of(current) == origin_of(url)
            extra = {"Accept": accept, **(headers or {})} if same_origin else {"Accept": accept}
            outcome = await _send_once(pool, "GET", current, target, policy, deadline, field, extra)
            if isinstance(outcome, FetchedDocument):
                return outcome
            current = outcome
    raise too_many_redirects(url, current, policy.max_redirects, field)


async def post_form(url: str, data: Mapping[str, str], policy: OutboundPolicy, *,
                    headers: Mapping[str, str] | None = None, field: str | None = None,
                    raise_for_status: bool = True) -> FetchedDocument:
    """POST ``data`` form-urlencoded, asking for JSON; no redirects. A non-2xx answer raises
    OutboundFetchError unless ``raise_for_status`` is false: then it is returned as any other."""
    deadline = time.monotonic() + policy.timeout * DEADLINE_FACTOR
    target = checked_syntax(url, policy.allow_insecure, field)
    with policy.calls.slot(url, field=field), call_scope(field, deadline):
        sent = await _send_once(_pool(policy), "POST", url, target, policy, deadline, field,
                                {"Accept": "application/json", **(headers or {})}, data, raise_for_status)
    assert isinstance(sent, FetchedDocument)  # a POST's 3xx is an answer, not a hop
    return sent


async def close_pools(policy: OutboundPolicy) -> None:
    """Close the running event loop's pools of ``policy`` and their keep-alive connections (the
    app's shutdown): a loop's connections cannot outlive it."""
    for pool in policy.loop_pools.pop(asyncio.get_running_loop(), {}).values():
        await pool.aclose()


def _pool(policy: OutboundPolicy) -> httpcore.AsyncConnectionPool:
    """This event loop's pool for the current trust store, made on first use. Its connections
    belong to the loop, so each loop (one per worker; tests may run several) has its own."""
    pools = policy.loop_pools.setdefault(asyncio.get_running_loop(), {})
    store = trust_store()
    pool = pools.get(store)
    if pool is None:
        pool = pools[store] = guarded_pool(vetter(policy), store)
    return pool


async def _send_once(pool: httpcore.AsyncConnectionPool, method: str, url: str, target: httpx.URL,
                     policy: OutboundPolicy, deadline: float, field: str | None, headers: Mapping[str, str],
                     form: Mapping[str, str] | None = None, strict: bool = True) -> FetchedDocument | str:
    """One request: the document, or (GET only) the URL a redirect points to; ``strict`` refuses non-2xx."""
    timeout = max(0.001, min(policy.timeout, deadline - time.monotonic()))
    sent = [*_BASE_HEADERS, *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())]
    content = None
    if form is not None:
        content = urlencode(form).encode("ascii")
        sent += [(b"Content-Type", _FORM), (b"Content-Length", str(len(content)).encode("ascii"))]
    address = httpcore.URL(scheme=target.raw_scheme, host=target.raw_host, port=target.port, target=target.raw_path)
    limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    try:
        async with pool.stream(method, address, headers=sent, content=content,
                               extensions={"timeout": limits}) as response:
            found = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
            phrase = response.extensions.get("reason_phrase", b"").decode("latin-1", "replace")
            # as httpx logs its requests: the URL (never a body, a header or credentials) and the status
            log.info('HTTP Request: %s %s "HTTP/1.1 %d %s"', method, shown_url(url), response.status, phrase)
            if method == "GET" and response.status in REDIRECT_STATUSES:
                return redirect_target(url, response.status, found.get("location"), field)
            if strict and not 200 <= response.status < 300:
                raise refused_status(method, url, response.status, phrase, field)
            check_body_headers(url, found, policy, field)
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                check_body_so_far(url, len(body), policy, deadline, field, method)
            return FetchedDocument(url, response.status, found.get("content-type", ""), bytes(body),
                                   validators=validators(found))
    except httpcore.TimeoutException as exc:
        if time.monotonic() >= deadline - 0.01:
            message = f"{method} {shown_url(url)} did not finish within {policy.timeout * DEADLINE_FACTOR:g} s"
        else:
            message = f"{method} {shown_url(url)} timed out: no answer within {timeout:g} s"
        raise fetch_failure(message, field, url=shown_url(url), timeout=policy.timeout) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        message = f"{method} {shown_url(url)} failed: {describe_exception(exc)}"
        raise fetch_failure(message, field, url=shown_url(url)) from exc
