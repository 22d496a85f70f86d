"""Outbound HTTP toward identity providers, behind an SSRF guard.

Keyhall fetches URLs that organizations' owners type in (OIDC discovery documents, JWKS, SAML
metadata). Without a guard, such a URL could make Keyhall read its own admin ports, a cloud
metadata service or anything else on the private network. So, unless the operator turned on
``KEYHALL_ALLOW_INSECURE_IDP_URLS`` (``OutboundPolicy.allow_insecure``) for development:

- the URL must be ``https`` with a host, and carry no credentials;
- every address the host resolves to must be public: loopback, private, link-local, multicast,
  reserved, unspecified, shared (CGNAT, RFC 6598) and documentation ranges are refused, also
  when embedded in IPv6 (IPv4-mapped, NAT64, 6to4);
- the connection goes to an address that was checked at connect time (the network backend of
  ``keyhall.security.guarded_transport`` resolves, validates and connects in one step), so a DNS
  answer that changes between the check and the connection (DNS rebinding) gains nothing. TLS
  SNI, certificate checks and the ``Host`` header still use the URL's host name;
- redirects are followed by hand, at most ``max_redirects``, and every hop is checked again;
  a caller's headers (a bearer token) only go to the first URL's origin; POSTs never follow.

At most ``policy.max_concurrent_calls`` fetches to one origin are in flight at once
(``keyhall.security.bulkhead``): past that a fetch raises ``IdPBusy`` at once. Every fetch has
connect and read timeouts (``policy.timeout``) and an overall deadline
(``DEADLINE_FACTOR`` times ``policy.timeout``, checked between reads); the body is streamed and
refused once it grows past ``policy.max_bytes``. Failures raise ``UnsafeURL`` or
``OutboundFetchError`` with a reason a person can act on; messages never carry URL credentials.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx

from keyhall.errors import OutboundFetchError
from keyhall.security.addresses import is_literal_address, non_public_reason
from keyhall.security.bulkhead import Bulkhead, origin_of
from keyhall.security.guarded_transport import (
    CALL,
    AddressVetter,
    GuardedBackend,
    GuardedTransport,
    describe_os_error,
    host_and_port,
)
from keyhall.security.outbound_urls import (
    INSECURE_HINT,
    checked_syntax,
    fetch_failure,
    host_of,
    parsed_url,
    port_of,
    redirect_target,
    refusal,
    refused_status,
    shown_url,
    too_many_redirects,
)

_Headers = Mapping[str, str] | None
#: ``(SSL_CERT_FILE, SSL_CERT_DIR)``: the trust store a pool's TLS connections verify against.
TrustStore = tuple[str | None, str | None]

#: The whole fetch, redirects included, must end within this many times ``policy.timeout``.
DEADLINE_FACTOR = 3.0
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "Keyhall (identity provider check)"

# Ranges that the ``is_*`` properties of ``ipaddress`` do not all flag on every Python version.


@dataclass(frozen=True)
class OutboundPolicy:
    """How Keyhall may reach an IdP URL."""

    allow_insecure: bool = False  # KEYHALL_ALLOW_INSECURE_IDP_URLS: http and loopback/private allowed
    timeout: float = 5.0  # seconds, connect and read each
    max_bytes: int = 1_048_576  # response bodies larger than this are refused
    max_redirects: int = 3
    max_concurrent_calls: int = 10  # KEYHALL_IDP_MAX_CONCURRENT_CALLS: in flight per IdP origin
    calls: Bulkhead = field(init=False, compare=False, repr=False)  # shared by every copy's fetches
    # The pooled clients (keep-alive connections), one per trust store, made on first use: _pooled().
    pool: dict[tuple[str | None, str | None], httpx.Client] = field(
        init=False, compare=False, repr=False, default_factory=dict)
    # The event loops' pools (``keyhall.security.outbound_async``): per loop, one per trust store.
    loop_pools: weakref.WeakKeyDictionary[Any, dict[TrustStore, httpcore.AsyncConnectionPool]] = field(
        init=False, compare=False, repr=False, default_factory=weakref.WeakKeyDictionary)

    def __post_init__(self) -> None:
        object.__setattr__(self, "calls", Bulkhead(self.max_concurrent_calls))


@dataclass(frozen=True)
class FetchedDocument:
    url: str  # final URL after redirects
    status: int
    content_type: str
    body: bytes
    validators: dict[str, str] = field(default_factory=dict)  # "etag", "last-modified" as sent


def check_url(url: str, policy: OutboundPolicy, *, field: str | None = None) -> None:
    """Raise UnsafeURL when the URL may not be used (syntax, scheme, resolved addresses).

    Without ``policy.allow_insecure`` the host is resolved and every address must be public; a
    host that does not resolve raises OutboundFetchError (there is nothing to check).
    """
    parsed = checked_syntax(url, policy.allow_insecure, field)
    if policy.allow_insecure:
        return
    host = host_of(parsed)
    port = port_of(parsed)
    _refuse_non_public(shown_url(url), host, _resolve(host, port, field), field)


def fetch(
    url: str, policy: OutboundPolicy, *, accept: str = "*/*", field: str | None = None, headers: _Headers = None,
    not_modified_ok: bool = False,
) -> FetchedDocument:
    """GET the URL under the policy; raise UnsafeURL or OutboundFetchError.

    Redirects (301, 302, 303, 307, 308) are followed by hand, each target checked again; the
    final URL is in ``FetchedDocument.url``. A non-2xx answer raises OutboundFetchError.
    ``headers`` (e.g. ``Authorization``) go to the URL's own origin, never to another after a redirect.
    Holds one of the URL's origin's places in ``policy.calls`` throughout (IdPBusy when none is free).
    ``not_modified_ok``: a 304 (for a conditional request, RFC 9110 §15.4.5) is answered, with an empty body.
    """
    deadline = time.monotonic() + policy.timeout * DEADLINE_FACTOR
    with policy.calls.slot(url, field=field), call_scope(field, deadline):
        client = _pooled(policy)
        current = url
        for _hop in range(policy.max_redirects + 1):
            check_url(current, policy, field=field)
            same_origin = origin_of(current) == origin_of(url)
            extra = {"Accept": accept, **(headers or {})} if same_origin else {"Accept": accept}
            outcome = _send_once(client, "GET", current, policy, deadline, field, headers=extra,
                                 not_modified_ok=not_modified_ok)
            if isinstance(outcome, FetchedDocument):
                return outcome
            current = outcome
    raise too_many_redirects(url, current, policy.max_redirects, field)


def post_form(
    url: str,
    data: Mapping[str, str],
    policy: OutboundPolicy,
    *,
    headers: _Headers = None,
    field: str | None = None,
    raise_for_status: bool = True,
) -> FetchedDocument:
    """POST ``data`` form-urlencoded, asking for JSON (e.g. RFC 6749 §4.1.3), with ``fetch``'s guard and limits.

    Redirects are not followed. A non-2xx answer raises OutboundFetchError unless ``raise_for_status``
    is false: then every answer is returned with its status and body (RFC 6749 §5.2 error documents).
    """
    deadline = time.monotonic() + policy.timeout * DEADLINE_FACTOR
    check_url(url, policy, field=field)
    with policy.calls.slot(url, field=field), call_scope(field, deadline):
        sent = _send_once(_pooled(policy), "POST", url, policy, deadline, field,
                          {"Accept": "application/json", **(headers or {})}, data, raise_for_status)
    assert isinstance(sent, FetchedDocument)  # a POST's 3xx is an answer, not a hop
    return sent


@dataclass(frozen=True)
class PostedAnswer:
    status: int
    excerpt: bytes  # the first ``excerpt_bytes`` of the body; the rest is not read


def post_content(url: str, content: bytes, policy: OutboundPolicy, *, headers: Mapping[str, str],
                 excerpt_bytes: int = 1024, field: str | None = None) -> PostedAnswer:
    """POST ``content`` (a webhook) under ``fetch``'s guard, timeouts and per-origin cap; no
    redirects. Every answer is returned with its status and the start of its body, which is not
    read further; UnsafeURL or OutboundFetchError when no answer came."""
    deadline = time.monotonic() + policy.timeout * DEADLINE_FACTOR
    check_url(url, policy, field=field)
    timeout = httpx.Timeout(policy.timeout)
    with policy.calls.slot(url, field=field), call_scope(field, deadline):
        client = _pooled(policy)
        try:
            with client.stream("POST", url, content=content, headers={"Accept": "*/*", **headers},
                               timeout=timeout) as response:
                excerpt = bytearray()
                for chunk in response.iter_raw():
                    excerpt += chunk
                    if len(excerpt) >= excerpt_bytes or time.monotonic() > deadline:
                        break
                return PostedAnswer(response.status_code, bytes(excerpt[:excerpt_bytes]))
        except (httpcore.TimeoutException, httpx.TimeoutException) as exc:
            raise fetch_failure(f"POST {shown_url(url)} timed out: no answer within {policy.timeout:g} s", field,
                                url=shown_url(url), timeout=policy.timeout) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, httpx.HTTPError) as exc:
            raise fetch_failure(f"POST {shown_url(url)} failed: {describe_exception(exc)}", field,
                                url=shown_url(url)) from exc


_POOL_LOCK = threading.Lock()


def _close_clients(clients: dict[tuple[str | None, str | None], httpx.Client]) -> None:
    for client in list(clients.values()):
        client.close()


@contextlib.contextmanager
def call_scope(field: str | None, deadline: float) -> Iterator[None]:
    """This request's ``field`` and overall deadline, for the pooled connections it opens and uses."""
    token = CALL.set((field, deadline))
    try:
        yield
    finally:
        CALL.reset(token)


def _pooled(policy: OutboundPolicy) -> httpx.Client:
    """The policy's client for the current trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR``): its
    connections stay open between requests (keep-alive), so a sign-in's calls to an IdP do not each
    build a client and a TCP (and TLS) connection. Every new connection is still vetted when it is
    opened (``GuardedBackend``), by this policy's rules."""
    store = trust_store()
    client = policy.pool.get(store)
    if client is not None:
        return client
    with _POOL_LOCK:
        if not policy.pool:  # the connections close with the policy (not at some later collection)
            weakref.finalize(policy, _close_clients, policy.pool)
        if store not in policy.pool:
            headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
            # One client serves every sign-in: it keeps no cookies, so nothing an IdP set for one
            # call (one person's sign-in) is sent with another's.
            no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
            policy.pool[store] = httpx.Client(transport=GuardedTransport(GuardedBackend(vetter(policy)), store),
                                              trust_env=False, follow_redirects=False, headers=headers,
                                              cookies=no_cookies)
        return policy.pool[store]


def trust_store() -> TrustStore:
    """The trust store TLS connections verify against now: ``(SSL_CERT_FILE, SSL_CERT_DIR)``."""
    return os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")


def vetter(policy: OutboundPolicy) -> AddressVetter:
    """What a guarded backend calls at connect time, for every new connection: the host's addresses,
    each judged by ``policy``'s rules (UnsafeURL when one is not public)."""
    def vet(host: str, port: int, field: str | None) -> list[str]:
        addresses = _resolve(host, port, field)
        if not policy.allow_insecure:
            _refuse_non_public(host_and_port(host, port), host, addresses, field)
        return addresses

    return vet


def _send_once(
    client: httpx.Client,
    method: str,
    url: str,
    policy: OutboundPolicy,
    deadline: float,
    field: str | None,
    headers: _Headers = None,
    form: Mapping[str, str] | None = None,
    strict: bool = True,
    not_modified_ok: bool = False,
) -> FetchedDocument | str:
    """One request: the document, or (GET only) the URL a redirect points to; ``strict`` refuses non-2xx."""
    timeout = httpx.Timeout(max(0.001, min(policy.timeout, deadline - time.monotonic())))
    try:
        with client.stream(method, parsed_url(url), headers=headers, data=form, timeout=timeout) as response:
            if method == "GET" and response.status_code in REDIRECT_STATUSES:
                return redirect_target(url, response.status_code, response.headers.get("location"), field)
            if not_modified_ok and response.status_code == 304:
                return FetchedDocument(url, 304, response.headers.get("content-type", ""), b"",
                                       validators=validators(response.headers))
            if strict and not 200 <= response.status_code < 300:
                raise refused_status(method, url, response.status_code, response.reason_phrase, field)
            body = _read_capped(url, response, policy, deadline, field, method)
            return FetchedDocument(url, response.status_code, response.headers.get("content-type", ""), body,
                                   validators=validators(response.headers))
    except (httpcore.TimeoutException, httpx.TimeoutException) as exc:
        if time.monotonic() >= deadline - 0.01:
            limit = policy.timeout * DEADLINE_FACTOR
            message = f"{method} {shown_url(url)} did not finish within {limit:g} s"
        else:
            message = f"{method} {shown_url(url)} timed out: no answer within {timeout.read:g} s"
        raise fetch_failure(message, field, url=shown_url(url), timeout=policy.timeout) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpx.HTTPError) as exc:
        message = f"{method} {shown_url(url)} failed: {describe_exception(exc)}"
        raise fetch_failure(message, field, url=shown_url(url)) from exc


def validators(headers: Mapping[str, str]) -> dict[str, str]:
    """A response's cache validators (RFC 9110 §8.8): ``etag`` and ``last-modified`` when sent
    (``headers``: looked up by lower-case name)."""
    return {name: headers[name][:512] for name in ("etag", "last-modified") if name in headers}


# --- addresses -----------------------------------------------------------------------------------


def _resolve(host: str, port: int, field: str | None) -> list[str]:
    """All addresses of the host (a literal resolves to itself), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        raise fetch_failure(f"could not resolve host {host}: {reason}", field, host=host) from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise fetch_failure(f"could not resolve host {host}: no addresses", field, host=host)
    return addresses


def _refuse_non_public(subject: str, host: str, addresses: Iterable[str], field: str | None) -> None:
    """Raise UnsafeURL when an address of the host is not public; ``subject`` is what to blame.

    A host given as an IP address is named with the kind of address it is. For a host name the
    message only says that it resolves to a non-public address, never which one nor what kind:
    otherwise the refusal would tell whoever typed the URL what Keyhall's resolver sees (internal
    names and addresses, a map of the private network)."""
    for address in addresses:
        reason = non_public_reason(ipaddress.ip_address(address))
        if reason is None:
            continue
        if is_literal_address(host):
            message = f"{subject} is refused: host {host} is {reason} address;"
            details: dict[str, Any] = {"target": subject, "address": address, "reason": reason}
        else:
            message = f"{subject} is refused: host {host} resolves to a non-public address;"
            details = {"target": subject, "reason": "non_public"}
        message += f" Keyhall only contacts identity providers on public addresses ({INSECURE_HINT})"
        raise refusal(message, field, **details)


def describe_exception(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError):
        return describe_os_error(cause)
    if isinstance(exc, httpcore.RemoteProtocolError | httpx.RemoteProtocolError):
        return f"the server broke the HTTP protocol ({exc})"
    return str(exc) or type(exc).__name__


# --- body --------------------------------------------------------------------------------------


def _read_capped(
    url: str, response: httpx.Response, policy: OutboundPolicy, deadline: float, field: str | None, method: str = "GET"
) -> bytes:
    """The body, streamed; refused past ``max_bytes``, past the deadline, or when compressed."""
    check_body_headers(url, response.headers, policy, field)
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        check_body_so_far(url, len(body), policy, deadline, field, method)
    return bytes(body)


def check_body_headers(url: str, headers: Mapping[str, str], policy: OutboundPolicy, field: str | None) -> None:
    """Refuse a body before reading it: compressed, or declared larger than ``policy.max_bytes``
    (``headers``: looked up by lower-case name)."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in {"", "identity"}:
        message = f"the response from {shown_url(url)} is {encoding}-encoded although only identity was accepted"
        raise fetch_failure(message, field, url=shown_url(url))
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_big(url, policy, field)


def check_body_so_far(url: str, size: int, policy: OutboundPolicy, deadline: float, field: str | None,
                      method: str) -> None:
    """Refuse a body, while reading it, once it grows past ``policy.max_bytes`` or the deadline passes."""
    if size > policy.max_bytes:
        raise _too_big(url, policy, field)
    if time.monotonic() > deadline:
        limit = policy.timeout * DEADLINE_FACTOR
        raise fetch_failure(f"{method} {shown_url(url)} did not finish within {limit:g} s", field,
                            url=shown_url(url), deadline=limit)


def _too_big(url: str, policy: OutboundPolicy, field: str | None) -> OutboundFetchError:
    return fetch_failure(f"the response from {shown_url(url)} is larger than the {policy.max_bytes}-byte limit",
                         field, url=shown_url(url), max_bytes=policy.max_bytes)
