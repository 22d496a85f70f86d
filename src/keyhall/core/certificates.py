"""Rules for IdP certificates that change or run out, without storage or network.

- ``reconcile``: the signing certificates a SAML connection trusts from its metadata, after the
  metadata was fetched again. A new certificate is adopted beside the ones already trusted; one the
  metadata no longer lists keeps being trusted until it has been missing for ``overlap``, so a
  sign-in signed with either key succeeds across the IdP's rollover. Pinned certificates
  (``saml.certificates``) are the owner's and never change here.
- ``due_notice``: which ``connection.certificate.expiring`` notice a certificate is owed now:
  90, 30, 7 and 1 days before its notAfter (each once; a connection first seen at 20 days left
  gets the 30-day one, not 90 as well), then one a day while it is expired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

THRESHOLD_DAYS = (90, 30, 7, 1)
EXPIRED_PREFIX = "expired:"
REFRESH_ACTOR = "system:metadata-refresh"
"""Who the audit trail names for what the background refresh changes."""


@dataclass
class CertificateWatch:
    """What the background work remembers about one SAML connection between passes."""

    connection_id: str
    due_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    missing_since: dict[str, str] = field(default_factory=dict)  # fingerprint → ISO time first missed
    fired: dict[str, list[str]] = field(default_factory=dict)  # fingerprint → notices already raised
    last_error: str | None = None


@dataclass
class SpKeyRollover:
    """A SAML connection's SP key rollover: ``next_certificate`` is published in the SP metadata
    from staging on and becomes the active one at ``next_activates_at``; until then both keys
    decrypt. After activation the previous key still decrypts until ``previous_until``."""

    next_certificate: str | None = None
    next_private_key: str | None = None
    next_activates_at: datetime | None = None
    previous_private_key: str | None = None
    previous_until: datetime | None = None

    def decryption_keys(self, now: datetime) -> tuple[str, ...]:
        """The keys besides the active one that decrypt assertions at ``now``."""
        keys = [self.next_private_key] if self.next_private_key else []
        if self.previous_private_key and self.previous_until is not None and now < self.previous_until:
            keys.append(self.previous_private_key)
        return tuple(keys)

    @property
    def empty(self) -> bool:
        return not (self.next_private_key or self.previous_private_key)


class CertificateWatchStore(Protocol):
    def due(self, now: datetime, *, limit: int) -> list[str]:
        """Ids of SAML connections never watched or whose ``due_at`` has come."""
        ...
    def claim(self, connection_id: str, now: datetime, next_due: datetime) -> CertificateWatch | None:
        """Move a due connection's ``due_at`` to ``next_due`` (creating its row); None when another
        instance claimed it first or it is not due."""
        ...
    def save(self, watch: CertificateWatch) -> None: ...
    def sp_rollover(self, connection_id: str) -> SpKeyRollover | None: ...
    def save_sp_rollover(self, connection_id: str, rollover: SpKeyRollover, *, now: datetime) -> None:
        """Store the rollover state (creating the connection's row, due at ``now``)."""
        ...
    def all_sealed_secrets(self) -> list[tuple[str, str]]: ...
    def replace_sealed_secret(self, connection_id: str, blob: str) -> None: ...


@dataclass(frozen=True)
class FetchedMetadata:
    """The IdP's metadata as fetched again: its entity ID and signing certificates (``discovered``
    entries: ``sha256_fingerprint``, ``not_after``, ``pem``, ...), and its HTTP validators."""

    entity_id: str
    certificates: tuple[dict[str, Any], ...]
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Reconciled:
    certificates: list[dict[str, Any]]
    adopted: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    missing_since: dict[str, str]

    @property
    def changed(self) -> bool:
        return bool(self.adopted or self.dropped)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def fingerprint(entry: Mapping[str, Any]) -> str:
    return str(entry.get("sha256_fingerprint") or "")


def reconcile(current: Sequence[Mapping[str, Any]], fetched: Sequence[Mapping[str, Any]],
              missing_since: Mapping[str, str], *, now: datetime, overlap: timedelta) -> Reconciled:
    """The certificates to trust after a fetch: every fetched one (new ones adopted), and each
    current one the fetch lacks until it has been missing for ``overlap``."""
    fetched_prints = {fingerprint(entry) for entry in fetched}
    kept: list[dict[str, Any]] = [dict(entry) for entry in fetched]
    current_prints = {fingerprint(entry) for entry in current}
    adopted = [dict(entry) for entry in fetched if fingerprint(entry) not in current_prints]
    dropped: list[dict[str, Any]] = []
    still_missing: dict[str, str] = {}
    for entry in current:
        print_ = fingerprint(entry)
        if print_ in fetched_prints:
            continue
        since = missing_since.get(print_) or _iso(now)
        if now - _parse_iso(since) >= overlap:
            dropped.append(dict(entry))
        else:
            still_missing[print_] = since
            kept.append(dict(entry))
    return Reconciled(certificates=kept, adopted=adopted, dropped=dropped, missing_since=still_missing)


@dataclass(frozen=True)
class Notice:
    """One ``connection.certificate.expiring`` notice: ``threshold`` is "90", "30", "7", "1" or
    "expired"; ``record`` are the labels to remember as fired."""

    threshold: str
    days_left: int
    record: tuple[str, ...]


def due_notice(not_after: datetime, now: datetime, fired: Sequence[str]) -> Notice | None:
    """The notice owed for a certificate valid through ``not_after``, given those ``fired``."""
    remaining = not_after - now
    days_left = int(remaining.total_seconds() // 86400)
    if remaining.total_seconds() < 0:
        label = f"{EXPIRED_PREFIX}{now.date().isoformat()}"
        return None if label in fired else Notice("expired", days_left, (label,))
    reached = [days for days in THRESHOLD_DAYS if remaining <= timedelta(days=days)]
    if not reached:
        return None
    tightest = min(reached)
    if str(tightest) in fired:
        return None
    return Notice(str(tightest), days_left, tuple(str(days) for days in reached if str(days) not in fired))


def forget_absent(fired: Mapping[str, list[str]], present: Sequence[str]) -> dict[str, list[str]]:
    """``fired`` without the certificates no longer trusted."""
    return {print_: list(labels) for print_, labels in fired.items() if print_ in present}


def soonest_not_after(entries: Sequence[Mapping[str, Any]]) -> datetime | None:
    moments = [_parse_iso(str(entry["not_after"])) for entry in entries if entry.get("not_after")]
    return min(moments, default=None)
