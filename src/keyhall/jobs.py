"""Background work beside ``keyhall serve``: the periodic DNS re-check of claimed email domains,
and the purge of expired sign-in state.

``check_domains`` runs one pass (``keyhall domains check`` runs it from the command line);
``DomainChecker`` runs passes in a thread beside ``keyhall serve`` every
``KEYHALL_DOMAIN_CHECK_INTERVAL_SECONDS`` (``attach(app)`` ties it to the app's lifespan).
Each domain is checked in a unit of work of its own, with DNS asked outside any database
transaction, as the system principal, and audited when its state changes (see
``keyhall.core.domain_service`` for the rules). Several Keyhall instances may run the checker at
once: a check is idempotent, the worst case is a domain checked twice.

``purge`` deletes expired sign-in transactions, codes, refresh tokens, replay-cache rows, rate
counters, audit events past ``KEYHALL_AUDIT_RETENTION_DAYS`` and events past
``KEYHALL_EVENT_RETENTION_DAYS``, sign-in traces past ``KEYHALL_TRACE_RETENTION_DAYS`` (``keyhall purge`` runs it once;
``Purger`` every ``KEYHALL_PURGE_INTERVAL_SECONDS``; the rules are in ``keyhall.storage.purge``).
``WebhookDeliverer`` sends due webhook deliveries every ``KEYHALL_WEBHOOK_POLL_INTERVAL_SECONDS``
(the rules are in ``keyhall.core.webhook_service``); every instance runs one, and each delivery is
claimed by one of them at a time.
``deliver_logout_notices`` sends the back-channel logout tokens owed to products (OIDC
Back-Channel Logout 1.0; the rules are in ``keyhall.provider.backchannel``): due notices are
claimed and committed first, each POST is made outside any transaction through the SSRF guard, and
its outcome recorded in a unit of work of its own. ``LogoutNotifier`` runs it every
``KEYHALL_BACKCHANNEL_LOGOUT_INTERVAL_SECONDS``; several instances may run it, a claim gives each
attempt to one of them.

``watch_certificates`` refreshes SAML metadata fetched by URL and raises certificate expiry
notices (``keyhall.core.certificate_service``); ``CertificateWatcher`` runs it every
``KEYHALL_METADATA_REFRESH_SECONDS``; each connection is claimed by one instance at a time.

All run on ``PeriodicJob``: a daemon thread started and stopped with the app's lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI

from keyhall.core import certificate_service, domain_service, webhook_service
from keyhall.core.access import SYSTEM
from keyhall.core.certificates import FetchedMetadata
from keyhall.core.ports import TxtLookup
from keyhall.core.vocabulary import DomainStatus
from keyhall.core.webhooks import AttemptResult
from keyhall.errors import KeyhallError
from keyhall.idp.saml import refetch_metadata
from keyhall.metrics import observe_certificate_expiry
from keyhall.provider import backchannel
from keyhall.runtime import Runtime
from keyhall.security.outbound import OutboundPolicy, post_content, post_form

log = logging.getLogger("keyhall.jobs")


def check_domains(
    runtime: Runtime, *, limit: int = 100, lookup: TxtLookup | None = None, stop: threading.Event | None = None,
) -> dict[str, int]:
    """Check up to ``limit`` domains that are due (pending and failed claims, and verified domains
    not checked for a day) against DNS through the configured resolver.

    Returns counts: ``checked``, the resulting ``verified`` / ``failed`` / ``pending``,
    ``changed`` (status or error changed), ``dns_errors`` (DNS did not answer) and ``conflicts``
    (proven, but verified by another organization), ``errors`` (a check that could not be
    recorded). ``stop`` ends the pass between domains.
    """
    now = runtime.clock()
    with runtime.database.unit_of_work() as uow:
        due = domain_service.due_domains(uow, now, limit=limit)
    counts: Counter[str] = Counter({"checked": 0, "changed": 0, "dns_errors": 0, "conflicts": 0, "errors": 0,
                                    **{str(s): 0 for s in DomainStatus}})
    if not due:  # no DNS client made for nothing to check
        return dict(counts)
    resolver = lookup or runtime.txt_lookup()
    for domain in due:
        if stop is not None and stop.is_set():
            break
        try:
            with runtime.database.unit_of_work() as uow:
                verdict = domain_service.recheck_domain(uow, domain.organization_id, domain.id, resolver,
                                                        actor=SYSTEM.actor, now=runtime.clock())
        except KeyhallError as exc:  # e.g. a clash on commit: this domain only, the pass goes on
            log.warning("domain %s: check not recorded: %s", domain.name, exc.message)
            counts["errors"] += 1
            continue
        if verdict is None:
            continue
        counts["checked"] += 1
        counts[str(verdict.status)] += 1
        counts["changed"] += int(verdict.status is not domain.status or verdict.last_error != domain.last_error)
        counts["conflicts"] += int(verdict.conflict)
        counts["dns_errors"] += int(verdict.dns_failed)
        if verdict.status is not domain.status:
            log.info("domain %s: %s -> %s%s", domain.name, domain.status, verdict.status,
                     f" ({verdict.last_error})" if verdict.last_error else "")
    return dict(counts)


def purge(runtime: Runtime, *, stop: threading.Event | None = None) -> dict[str, int]:
    """One purge pass at the runtime's clock; rows deleted per kind."""
    return runtime.database.purge_expired(runtime.clock(),
                                          audit_retention_days=runtime.settings.audit_retention_days,
                                          event_retention_days=runtime.settings.event_retention_days,
                                          trace_retention_days=runtime.settings.trace_retention_days,
                                          stop=stop.is_set if stop is not None else None)


WEBHOOK_USER_AGENT = "Keyhall-Webhooks"


def webhook_sender(policy: OutboundPolicy) -> webhook_service.Sender:
    """POSTs through the SSRF guard (checked again at connect time); every failure is an outcome."""

    def send(url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        try:
            answer = post_content(url, body, policy, headers={**headers, "user-agent": WEBHOOK_USER_AGENT},
                                  field="url")
        except KeyhallError as exc:  # refused by the guard, no answer, timeout, too many in flight
            return AttemptResult(status_code=None, error=exc.message)
        return AttemptResult(status_code=answer.status, excerpt=answer.excerpt.decode("utf-8", "replace"))

    return send


def delivery_policy(runtime: Runtime) -> webhook_service.DeliveryPolicy:
    settings = runtime.settings
    # A lease outlives the longest attempt (the POST's overall deadline is 3 timeouts) by a margin.
    return webhook_service.DeliveryPolicy(
        retry_base=timedelta(seconds=settings.webhook_retry_base_seconds),
        retry_period=timedelta(seconds=settings.webhook_retry_period_seconds),
        lease=timedelta(seconds=settings.webhook_timeout_seconds * 4 + 30))


def deliver_webhooks(runtime: Runtime, *, stop: threading.Event | None = None,
                     send: webhook_service.Sender | None = None) -> dict[str, int]:
    """One delivery pass (claim, POST, record); counts per outcome."""
    return webhook_service.deliver_due(runtime.database.unit_of_work, send or webhook_sender(runtime.webhook_policy),
                                       runtime.clock, delivery_policy(runtime),
                                       stop=stop.is_set if stop is not None else (lambda: False))


def metadata_fetcher(policy: OutboundPolicy) -> certificate_service.MetadataFetcher:
    """Fetches IdP metadata again through the SSRF guard, as every IdP call is."""

    def fetch(url: str, *, etag: str | None, last_modified: str | None, now: datetime) -> FetchedMetadata | None:
        return refetch_metadata(url, policy, etag=etag, last_modified=last_modified, now=now)

    return fetch


def watch_policy(runtime: Runtime) -> certificate_service.WatchPolicy:
    settings = runtime.settings
    return certificate_service.WatchPolicy(interval=timedelta(seconds=max(settings.metadata_refresh_seconds, 60.0)),
                                           overlap=timedelta(days=settings.certificate_overlap_days))


def watch_certificates(runtime: Runtime, *, stop: threading.Event | None = None,
                       fetch: certificate_service.MetadataFetcher | None = None,
                       clock: Callable[[], datetime] | None = None) -> dict[str, int]:
    """One pass over the due SAML connections: metadata refreshed, certificates adopted or dropped,
    expiry notices raised; counts summed. ``clock`` defaults to the runtime's."""
    fetch = fetch or metadata_fetcher(runtime.inspector.policy)
    return certificate_service.watch_pass(runtime.database.unit_of_work, fetch, watch_policy(runtime),
                                          clock or runtime.clock,
                                          observe=observe_certificate_expiry,
                                          stop=stop.is_set if stop is not None else (lambda: False))


class PeriodicJob:
    """Calls ``run_pass(stop)`` every ``interval`` seconds in a daemon thread; ``interval <= 0``
    turns it off. ``stop()`` interrupts the wait (and a pass, where the pass checks ``stop``) and joins."""

    name = "job"

    def __init__(self, runtime: Runtime, *, interval: float):
        self.runtime = runtime
        self.interval = interval
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_pass(self, stop: threading.Event) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.interval <= 0 or self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"keyhall-{self.name}", daemon=True)
        self._thread.start()
        log.info("%s started: every %g s", self.name, self.interval)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            log.info("%s %s", self.name, "did not stop in time" if self._thread.is_alive() else "stopped")
            self._thread = None

    def attach(self, app: FastAPI) -> None:
        """Run beside ``app``: start when it starts serving, stop (and join) when it shuts down,
        which uvicorn does on SIGINT and SIGTERM alike."""
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
            async with inner(asgi_app) as state:
                self.start()
                try:
                    yield state
                finally:
                    await asyncio.to_thread(self.stop)

        app.router.lifespan_context = lifespan

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pass(self._stop)
            except Exception:  # a failed pass (database down, ...) must not end the thread
                log.exception("%s failed", self.name)
            self.passes += 1
            self._stop.wait(self.interval)


class DomainChecker(PeriodicJob):
    """``check_domains`` every ``interval`` seconds. ``stop()`` ends the thread at once while it
    waits, and after the domain in hand while it checks (one DNS look-up, bounded by
    ``KEYHALL_IDP_TIMEOUT_SECONDS``)."""

    name = "domain checker"

    def __init__(self, runtime: Runtime, *, interval: float, limit: int = 100, lookup: TxtLookup | None = None):
        super().__init__(runtime, interval=interval)
        self.limit = limit
        self.lookup = lookup

    def run_pass(self, stop: threading.Event) -> None:
        summary = check_domains(self.runtime, limit=self.limit, lookup=self.lookup, stop=stop)
        if summary["checked"]:
            log.info("domain check: %s", summary)


class Purger(PeriodicJob):
    """``purge`` every ``interval`` seconds (``KEYHALL_PURGE_INTERVAL_SECONDS``); ``stop()`` ends
    a pass between two batches."""

    name = "purge"

    def run_pass(self, stop: threading.Event) -> None:
        counts = purge(self.runtime, stop=stop)
        if any(counts.values()):
            log.info("purge: %s", counts)


class WebhookDeliverer(PeriodicJob):
    """``deliver_webhooks`` every ``interval`` seconds, passes back to back while a pass found a
    full batch; ``stop()`` ends a pass after the attempt in hand."""

    name = "webhook deliverer"

    def run_pass(self, stop: threading.Event) -> None:
        while not stop.is_set():
            counts = deliver_webhooks(self.runtime, stop=stop)
            if counts["failed"] or counts["lost"]:
                log.info("webhooks: %s", counts)
            if counts["attempted"] < delivery_policy(self.runtime).batch:
                return
def deliver_logout_notices(runtime: Runtime, *, limit: int = 50, stop: threading.Event | None = None) -> dict[str, int]:
    """One pass: send the due back-channel logout tokens; counts ``delivered``, ``failed`` (to be
    retried) and ``abandoned`` (the last retry failed)."""
    counts: Counter[str] = Counter({"delivered": 0, "failed": 0, "abandoned": 0})
    with runtime.database.unit_of_work() as uow:
        due = backchannel.claim_due(uow, issuer=runtime.settings.public_url, now=runtime.clock(), limit=limit)
    for delivery in due:
        if stop is not None and stop.is_set():
            break  # the claim lapses and another pass sends it
        error = None
        try:
            post_form(delivery.uri, {"logout_token": delivery.logout_token}, runtime.inspector.policy,
                      field="backchannel_logout_uri")
        except KeyhallError as exc:  # refused by the guard, unreachable, or a non-2xx answer
            error = exc.message
        with runtime.database.unit_of_work() as uow:
            done = backchannel.record_attempt(uow, delivery.notice, runtime.clock(), error)
        if error is None:
            counts["delivered"] += 1
        else:
            counts["abandoned" if done.abandoned_at else "failed"] += 1
            log.warning("back-channel logout to %s for %s (attempt %d) failed: %s", delivery.notice.client_id,
                        delivery.notice.id, done.attempts, error)
    return dict(counts)


class LogoutNotifier(PeriodicJob):
    """``deliver_logout_notices`` every ``interval`` seconds (``KEYHALL_BACKCHANNEL_LOGOUT_INTERVAL_SECONDS``)."""

    name = "logout notifier"

    def run_pass(self, stop: threading.Event) -> None:
        counts = deliver_logout_notices(self.runtime, stop=stop)
        if any(counts.values()):
            log.info("back-channel logout: %s", counts)


class CertificateWatcher(PeriodicJob):
    """``watch_certificates`` every ``interval`` seconds (``KEYHALL_METADATA_REFRESH_SECONDS``), passes
    back to back while a pass found a full batch; ``stop()`` ends a pass after the connection in hand."""

    name = "certificate watcher"

    def run_pass(self, stop: threading.Event) -> None:
        while not stop.is_set():
            counts = watch_certificates(self.runtime, stop=stop)
            if counts["adopted"] or counts["dropped"] or counts["notices"] or counts["errors"]:
                log.info("certificates: %s", counts)
            if counts["connections"] < watch_policy(self.runtime).batch:
                return
