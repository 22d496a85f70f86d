"""The background look at SAML connections' IdP certificates: metadata refresh and expiry notices.

``watch_pass`` takes the connections that are due (``CertificateWatchStore.due``), claims each one
(a conditional UPDATE of its ``due_at``, so that with several instances one does each), then:

1. for a connection created from ``saml.metadata_url`` with ``saml.auto_update_certificates`` on,
   fetches the metadata again (outside any transaction, conditionally: ``If-None-Match`` /
   ``If-Modified-Since``) and reconciles its signing certificates (``keyhall.core.certificates``):
   a new one is trusted beside the current ones, a removed one after its overlap, each change
   audited as ``system:metadata-refresh``. ``is_verified`` stays (same IdP) unless the metadata now
   names another entity ID: then nothing is adopted and the failure is audited;
2. raises ``connection.certificate.expiring`` for every trusted certificate (pinned or from
   metadata) that reached 90/30/7/1 days before notAfter, then daily while expired, each once;
3. makes a staged SP key active when its time has come (``keyhall.core.sp_key_rollover``);
4. reports the soonest notAfter to ``observe`` (the Prometheus gauge).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from keyhall.core import audit, events, sp_key_rollover
from keyhall.core.certificates import (
    EXPIRED_PREFIX,
    REFRESH_ACTOR,
    CertificateWatch,
    FetchedMetadata,
    due_notice,
    fingerprint,
    forget_absent,
    reconcile,
    soonest_not_after,
)
from keyhall.core.connections import Connection
from keyhall.core.ports import UnitOfWork
from keyhall.core.vocabulary import ConnectionStatus
from keyhall.core.vocabulary import Protocol as ConnProtocol
from keyhall.errors import KeyhallError
from keyhall.protocols.saml.certificates import isoformat_z, parse_certificate

log = logging.getLogger("keyhall.certificates")


WatchingUnitOfWork = UnitOfWork


class MetadataFetcher(Protocol):
    def __call__(self, url: str, *, etag: str | None, last_modified: str | None,
                 now: datetime) -> FetchedMetadata | None:
        """The metadata, or None when the server answered 304 Not Modified. Raises KeyhallError."""
        ...


@dataclass(frozen=True)
class WatchPolicy:
    interval: timedelta  # KEYHALL_METADATA_REFRESH_SECONDS
    overlap: timedelta  # KEYHALL_CERTIFICATE_OVERLAP_DAYS
    batch: int = 100


Observe = Callable[[str, datetime | None], None]


def _pinned(conn: Connection) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for pem in conn.settings.get("certificates") or []:
        try:
            info = parse_certificate(str(pem), field="saml.certificates")
        except KeyhallError:
            continue
        found.append({"sha256_fingerprint": info.sha256_fingerprint, "not_after": isoformat_z(info.not_after),
                      "subject": info.subject, "pem": info.pem})
    return found


def _trusted(conn: Connection) -> list[dict[str, Any]]:
    """Every certificate a response from this connection's IdP may be signed with, once each."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in (*_pinned(conn), *((conn.discovered or {}).get("certificates") or [])):
        if isinstance(entry, dict) and fingerprint(entry):
            seen.setdefault(fingerprint(entry), entry)
    return list(seen.values())


def _refreshes(conn: Connection) -> bool:
    return (conn.protocol is ConnProtocol.SAML and conn.status is ConnectionStatus.ACTIVE
            and bool(conn.settings.get("metadata_url"))
            and conn.settings.get("auto_update_certificates", True) is not False)


def _brief(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry.get(key) for key in ("sha256_fingerprint", "subject", "not_after")}


def _audit(uow: UnitOfWork, conn: Connection, action: str, now: datetime, changes: dict[str, Any]) -> None:
    uow.audit.add(audit.event(organization_id=conn.organization_id, actor=REFRESH_ACTOR, action=action,
                              target_type="connection", target_id=conn.id, request_id=None, now=now,
                              changes=changes))


def _apply_refresh(uow: UnitOfWork, conn: Connection, watch: CertificateWatch, fetched: FetchedMetadata,
                   now: datetime, overlap: timedelta) -> None:
    found = dict(conn.discovered or {})
    known_entity = str(found.get("idp_entity_id") or conn.settings.get("idp_entity_id") or "")
    watch.etag, watch.last_modified = fetched.etag, fetched.last_modified
    if known_entity and fetched.entity_id != known_entity:
        error = f"metadata now names entity ID {fetched.entity_id!r}, not {known_entity!r}"
        if watch.last_error != error:  # audited once, not every pass while it lasts
            _audit(uow, conn, "connection.metadata.refresh_failed", now, {
                "reason": "entity_id_changed", "idp_entity_id": known_entity, "metadata_entity_id": fetched.entity_id})
        watch.last_error = error
        return
    current = [entry for entry in found.get("certificates") or [] if isinstance(entry, dict)]
    result = reconcile(current, fetched.certificates, watch.missing_since, now=now, overlap=overlap)
    watch.missing_since, watch.last_error = result.missing_since, None
    if not result.changed:
        return
    soonest = soonest_not_after(result.certificates)
    found.update(certificates=result.certificates, fetched_at=isoformat_z(now),
                 certificate_expires_at=isoformat_z(soonest) if soonest else None,
                 certificate_days_left=int((soonest - now).total_seconds() // 86400) if soonest else None)
    expected = conn.version
    conn.discovered, conn.version, conn.updated_at = found, conn.version + 1, now  # is_verified stays
    if not uow.connections.save(conn, expected_version=expected):
        raise KeyhallError("the connection changed meanwhile; its certificates are looked at next pass")
    for entry in result.adopted:
        _audit(uow, conn, "connection.certificate.adopted", now, {"certificate": _brief(entry)})
    for entry in result.dropped:
        _audit(uow, conn, "connection.certificate.dropped", now,
               {"certificate": _brief(entry), "reason": "absent from metadata past the overlap"})


def _notices(conn: Connection, watch: CertificateWatch, now: datetime) -> list[dict[str, Any]]:
    trusted = _trusted(conn)
    watch.fired = forget_absent(watch.fired, [fingerprint(entry) for entry in trusted])
    owed: list[dict[str, Any]] = []
    for entry in trusted:
        if not entry.get("not_after"):
            continue
        not_after = datetime.fromisoformat(str(entry["not_after"]).replace("Z", "+00:00"))
        fired = watch.fired.get(fingerprint(entry), [])
        notice = due_notice(not_after, now, fired)
        if notice is None:
            continue
        if notice.threshold == "expired":
            fired = [label for label in fired if not label.startswith(EXPIRED_PREFIX)]
        watch.fired[fingerprint(entry)] = [*fired, *notice.record]
        owed.append({"connection_id": conn.id, "organization_id": conn.organization_id, "name": conn.name,
                     "threshold": notice.threshold, "days_left": notice.days_left, **_brief(entry)})
    return owed


def _unchanged(conn: Connection, watch: CertificateWatch) -> FetchedMetadata:
    """What a 304 Not Modified stands for: the metadata as last fetched (a certificate it stopped
    listing is still on its overlap, so the overlap goes on counting)."""
    found = conn.discovered or {}
    listed = tuple(entry for entry in found.get("certificates") or []
                   if isinstance(entry, dict) and fingerprint(entry) not in watch.missing_since)
    return FetchedMetadata(entity_id=str(found.get("idp_entity_id") or conn.settings.get("idp_entity_id") or ""),
                           certificates=listed, etag=watch.etag, last_modified=watch.last_modified)


def watch_connection(unit_of_work: Callable[[], AbstractContextManager[WatchingUnitOfWork]], connection_id: str,
                     fetch: MetadataFetcher, policy: WatchPolicy, clock: Callable[[], datetime],
                     observe: Observe | None = None) -> dict[str, int] | None:
    """Claim, refresh and check one connection; None when another instance holds it."""
    now = clock()
    with unit_of_work() as uow:
        watch = uow.certificate_watch.claim(connection_id, now, now + policy.interval)
        conn = uow.connections.get_any(connection_id) if watch else None
        uow.commit()
    if watch is None or conn is None:
        return None
    fetched: FetchedMetadata | None = None
    error: str | None = None
    if _refreshes(conn):
        try:
            fetched = fetch(str(conn.settings["metadata_url"]), etag=watch.etag, last_modified=watch.last_modified,
                            now=now) or _unchanged(conn, watch)
        except KeyhallError as exc:
            error = exc.message
    counts = {"refreshed": int(fetched is not None), "adopted": 0, "dropped": 0, "notices": 0, "errors": 0}
    with unit_of_work() as uow:
        conn = uow.connections.get_any(connection_id)
        if conn is None:
            return None
        if error is not None:
            watch.last_error = error
            counts["errors"] += 1
            log.warning("connection %s: metadata refresh failed: %s", connection_id, error)
        elif fetched is not None:
            before = {fingerprint(e) for e in (conn.discovered or {}).get("certificates") or [] if isinstance(e, dict)}
            _apply_refresh(uow, conn, watch, fetched, now, policy.overlap)
            after = {fingerprint(e) for e in (conn.discovered or {}).get("certificates") or [] if isinstance(e, dict)}
            counts["adopted"], counts["dropped"] = len(after - before), len(before - after)
            counts["errors"] += int(watch.last_error is not None)
        counts["sp_keys"] = int(sp_key_rollover.activate_due(uow, conn, actor=REFRESH_ACTOR, now=now,
                                                            overlap=policy.overlap))
        owed = _notices(conn, watch, now)
        uow.certificate_watch.save(watch)
        for data in owed:  # the event log is the transaction's last write (keyhall.core.events.emit)
            events.emit(uow, "connection.certificate.expiring", organization_id=conn.organization_id, data=data,
                        now=now)
        uow.commit()
    counts["notices"] = len(owed)
    if observe is not None:
        observe(connection_id, soonest_not_after(_trusted(conn)))
    return counts


def watch_pass(unit_of_work: Callable[[], AbstractContextManager[WatchingUnitOfWork]], fetch: MetadataFetcher,
               policy: WatchPolicy, clock: Callable[[], datetime], *, observe: Observe | None = None,
               stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """One pass over the due SAML connections; counts summed over them."""
    with unit_of_work() as uow:
        due: Sequence[str] = uow.certificate_watch.due(clock(), limit=policy.batch)
    totals = {"connections": 0, "refreshed": 0, "adopted": 0, "dropped": 0, "notices": 0, "sp_keys": 0, "errors": 0}
    for connection_id in due:
        if stop():
            break
        try:
            counts = watch_connection(unit_of_work, connection_id, fetch, policy, clock, observe)
        except KeyhallError as exc:  # e.g. a concurrent edit: this connection only, the pass goes on
            log.warning("connection %s: certificates not looked at: %s", connection_id, exc.message)
            totals["errors"] += 1
            continue
        if counts is None:
            continue
        totals["connections"] += 1
        for key, value in counts.items():
            totals[key] += value
    return totals


def trusted_certificates(conn: Connection) -> list[dict[str, Any]]:
    """Every certificate the connection's IdP may sign with (pinned or from its metadata), once each,
    as ``sha256_fingerprint``, ``subject`` and ``not_after``: what an IT admin renewing one looks at."""
    return [_brief(entry) for entry in _trusted(conn)]
