"""The metric core: the metric families of one app, and the plain functions code far from the HTTP
layer (the login flow, the IdP clients) reports through: ``observe_login``, ``observe_idp_call``,
``idp_call``.

A leaf module (no Keyhall import but ``errors``), so ``login/`` and ``idp/`` report without importing
the web surface; ``keyhall.api.observability`` holds the HTTP parts (middleware, ``GET /metrics``).
The current app's ``Metrics`` is found through a context variable the middleware sets for each
request; outside any request reports go to the most recently installed app's metrics, and with none
installed they do nothing. Metrics never fail a request: an unexpected label value is folded into a
bounded one (see ``keyhall.api.observability`` for the label rules).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from keyhall.errors import IdPLoginReason, IdTokenReason, SamlReason

IdpCallKind = Literal["oidc_discovery", "oidc_token", "oidc_userinfo", "oidc_jwks", "saml_metadata", "ldap", "dns"]
IDP_CALL_KINDS: frozenset[str] = frozenset(get_args(IdpCallKind))

#: Reasons the login flow and the pages give (``LoginFailed.reason``, ``LoginRefused.reason``,
#: ``LdapLoginReason`` — spelled out here: the LDAP client will import this module), and the error
#: codes a flow passes on as its reason when a lower layer failed.
_FLOW_REASONS = (
    "ok", "transaction_not_bound", "transaction_unknown", "transaction_expired", "unknown_connection",
    "connection_inactive", "unknown_organization", "invalid_email", "connection_not_in_organization",
    "protocol_unsupported", "protocol_mismatch", "csrf_invalid", "bad_credentials", "password_disabled",
    "connection_not_requested", "idp_initiated_misconfigured", "state_invalid", "connection_misconfigured",
    "replayed", "issuer_mismatch", "missing_code", "idp_error", "rate_limited", "user_disabled",
    "provisioning_disabled", "not_provisioned", "invalid_subject", "invalid_username",
    "fetch_failed", "unsafe_url", "idp_login_failed", "id_token_invalid", "saml_response_invalid",
    "ldap_login_failed", "login_refused", "internal_error",
    "empty_password", "user_not_found", "ambiguous_user", "invalid_credentials", "directory_unavailable",
    "account_locked", "idp_busy", "unavailable",
    # issue 10, trust boundaries: what Keyhall vouches for, routing pins, re-authentication
    "email_not_verified", "tenant_mismatch", "tenant_not_configured", "connection_not_routed",
    "password_not_routed", "auth_time_missing", "max_age_exceeded", "reauthentication_skipped",
    # the test sign-in (issue 14): its single-use link was spent or has expired
    "test_link_invalid",
)
LOGIN_REASONS: frozenset[str] = frozenset(
    (*_FLOW_REASONS, *get_args(IdPLoginReason), *get_args(IdTokenReason), *get_args(SamlReason))
)
MAX_CONNECTION_LABELS = 5000
OTHER = "other"
_CONNECTION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_IDP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The metric families of one Keyhall app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "keyhall_http_requests", "HTTP requests answered, by method, route template and status class.",
            ("method", "route", "status"), registry=self.registry)
        self.request_seconds = Histogram(
            "keyhall_http_request_duration_seconds", "Time to answer an HTTP request (until the body is sent).",
            ("method", "route", "status"), registry=self.registry)
        self.logins = Counter(
            "keyhall_logins", "Sign-ins finished, by connection, outcome (success or failure) and reason.",
            ("connection_id", "outcome", "reason"), registry=self.registry)
        self.idp_call_seconds = Histogram(
            "keyhall_idp_call_duration_seconds", "Time spent on one call to an identity provider, DNS included.",
            ("kind",), buckets=_IDP_BUCKETS, registry=self.registry)
        self.idp_call_errors = Counter(
            "keyhall_idp_call_errors", "Calls to an identity provider that failed, by kind.",
            ("kind",), registry=self.registry)
        self.idp_certificate_not_after = Gauge(
            "keyhall_idp_certificate_not_after_seconds",
            "Unix time at which the soonest-expiring IdP signing certificate of a SAML connection expires.",
            ("connection",), registry=self.registry)
        for kind in sorted(IDP_CALL_KINDS):  # present at zero from the start, so rate() alerts work
            self.idp_call_errors.labels(kind)
        self._connections: set[str] = set()
        self._lock = threading.Lock()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)

    def connection_label(self, connection_id: str | None) -> str:
        if not connection_id:
            return "none"
        if not _CONNECTION_ID.match(connection_id):
            return OTHER
        with self._lock:
            if connection_id in self._connections:
                return connection_id
            if len(self._connections) >= MAX_CONNECTION_LABELS:
                return OTHER
            self._connections.add(connection_id)
        return connection_id


_current: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar("keyhall_metrics", default=None)
_process_default: Metrics | None = None


def current_metrics() -> Metrics | None:
    """The metrics of the app serving this request, else of the most recently installed app."""
    return _current.get() or _process_default


def set_process_default(metrics: Metrics) -> None:
    """Report to ``metrics`` outside any request (the most recently installed app's)."""
    global _process_default
    _process_default = metrics


def enter_request(metrics: Metrics) -> contextvars.Token[Metrics | None]:
    """Make ``metrics`` the current app's for this request; pass the token to ``leave_request``."""
    return _current.set(metrics)


def leave_request(token: contextvars.Token[Metrics | None]) -> None:
    _current.reset(token)


def login_reason_label(reason: str) -> str:
    base = reason.split(":", 1)[0]
    return base if base in LOGIN_REASONS else OTHER


_login_log = logging.getLogger("keyhall.login")


def observe_login(connection_id: str | None, ok: bool, reason: str) -> None:
    """Count a finished sign-in (call it where the sign-in is audited: once per outcome); log a failed one
    (its typed reason and connection; the request id comes with every log line, nothing secret does)."""
    if not ok:
        _login_log.warning("sign-in failed: %s", reason[:80],
                           extra={"fields": {"event": "login.failed", "reason": reason[:80],
                                             "connection_id": connection_id}})
    metrics = current_metrics()
    if metrics is None:
        return
    metrics.logins.labels(metrics.connection_label(connection_id), "success" if ok else "failure",
                          "ok" if ok else login_reason_label(reason)).inc()


def observe_idp_call(kind: IdpCallKind, seconds: float, ok: bool) -> None:
    """Record one call to an identity provider (or DNS): its duration, and whether it failed.

    ``ok`` is about reaching the IdP and getting a usable answer: a directory that refuses a
    wrong password answered fine.
    """
    metrics = current_metrics()
    if metrics is None:
        return
    label = kind if kind in IDP_CALL_KINDS else OTHER
    metrics.idp_call_seconds.labels(label).observe(max(seconds, 0.0))
    if not ok:
        metrics.idp_call_errors.labels(label).inc()


@contextmanager
def idp_call(kind: IdpCallKind) -> Iterator[None]:
    """Time the block as one ``kind`` call; an exception out of it counts as a failed call."""
    started = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        observe_idp_call(kind, time.perf_counter() - started, ok)


def observe_certificate_expiry(connection_id: str, not_after: datetime | None) -> None:
    """Set (or, without certificates, remove) the connection's ``keyhall_idp_certificate_not_after_seconds``."""
    metrics = current_metrics()
    if metrics is None:
        return
    label = metrics.connection_label(connection_id)
    if not_after is None:
        with contextlib.suppress(KeyError):
            metrics.idp_certificate_not_after.remove(label)
        return
    metrics.idp_certificate_not_after.labels(label).set(not_after.timestamp())
