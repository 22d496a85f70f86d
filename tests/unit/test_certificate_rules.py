"""The rules for IdP certificates that roll over or run out (``keyhall.core.certificates``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyhall.core.certificates import due_notice, forget_absent, reconcile, soonest_not_after

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def cert(name: str, days: int = 365) -> dict[str, Any]:
    return {"sha256_fingerprint": name, "not_after": (NOW + timedelta(days=days)).isoformat().replace("+00:00", "Z"),
            "pem": f"PEM-{name}"}


def prints(entries: list[dict[str, Any]]) -> list[str]:
    return [e["sha256_fingerprint"] for e in entries]


def test_a_new_certificate_is_adopted_beside_the_current_one() -> None:
    result = reconcile([cert("A")], [cert("A"), cert("B")], {}, now=NOW, overlap=WEEK)
    assert prints(result.certificates) == ["A", "B"]
    assert prints(result.adopted) == ["B"]
    assert result.dropped == []
    assert result.missing_since == {}


def test_a_removed_certificate_is_kept_through_the_overlap_then_dropped() -> None:
    first = reconcile([cert("A"), cert("B")], [cert("B")], {}, now=NOW, overlap=WEEK)
    assert sorted(prints(first.certificates)) == ["A", "B"]
    assert not first.changed
    assert list(first.missing_since) == ["A"]
    later = reconcile(first.certificates, [cert("B")], first.missing_since, now=NOW + WEEK - timedelta(seconds=1),
                      overlap=WEEK)
    assert sorted(prints(later.certificates)) == ["A", "B"]
    assert not later.changed
    gone = reconcile(later.certificates, [cert("B")], later.missing_since, now=NOW + WEEK, overlap=WEEK)
    assert prints(gone.certificates) == ["B"]
    assert prints(gone.dropped) == ["A"]
    assert gone.missing_since == {}


def test_a_certificate_that_comes_back_starts_a_fresh_overlap() -> None:
    missing = reconcile([cert("A"), cert("B")], [cert("B")], {}, now=NOW, overlap=WEEK).missing_since
    back = reconcile([cert("A"), cert("B")], [cert("A"), cert("B")], missing, now=NOW + timedelta(days=3),
                     overlap=WEEK)
    assert back.missing_since == {}
    assert not back.changed


def test_unchanged_metadata_changes_nothing() -> None:
    result = reconcile([cert("A")], [cert("A")], {}, now=NOW, overlap=WEEK)
    assert not result.changed
    assert prints(result.certificates) == ["A"]


@pytest.mark.parametrize(("days_left", "fired", "expected"), [
    (120, [], None),
    (90, [], ("90", ("90",))),
    (89, ["90"], None),
    (30, ["90"], ("30", ("30",))),
    (20, [], ("30", ("90", "30"))),  # first seen late: the tightest notice only, the wider ones counted as sent
    (7, ["90", "30"], ("7", ("7",))),
    (1, ["90", "30", "7"], ("1", ("1",))),
    (0.5, ["90", "30", "7", "1"], None),
])
def test_expiry_notices_fire_once_at_each_threshold(days_left: float, fired: list[str],
                                                    expected: tuple[str, tuple[str, ...]] | None) -> None:
    notice = due_notice(NOW + timedelta(days=days_left), NOW, fired)
    assert (None if notice is None else (notice.threshold, notice.record)) == expected


def test_an_expired_certificate_is_announced_once_a_day() -> None:
    not_after = NOW - timedelta(hours=1)
    first = due_notice(not_after, NOW, ["90", "30", "7", "1"])
    assert first is not None
    assert first.threshold == "expired"
    assert first.record == ("expired:2027-01-01",)
    assert due_notice(not_after, NOW + timedelta(hours=6), [*first.record]) is None
    nxt = due_notice(not_after, NOW + timedelta(days=1), [*first.record])
    assert nxt is not None
    assert nxt.record == ("expired:2027-01-02",)
    assert nxt.days_left == -2


def test_forgetting_and_soonest() -> None:
    assert forget_absent({"A": ["90"], "B": ["30"]}, ["B"]) == {"B": ["30"]}
    assert soonest_not_after([cert("A", 10), cert("B", 5)]) == NOW + timedelta(days=5)
    assert soonest_not_after([]) is None


def test_the_background_refresh_goes_through_the_ssrf_guard() -> None:
    """Metadata fetched again in the background is refused where the first fetch would be: plain
    http, and addresses on loopback or private networks (the attack: a metadata URL changed to reach
    an internal service)."""
    from keyhall.errors import UnsafeURL
    from keyhall.idp.saml import refetch_metadata
    from keyhall.security.outbound import OutboundPolicy

    strict = OutboundPolicy(allow_insecure=False)
    for url in ("http://idp.example.com/metadata", "https://127.0.0.1/metadata", "https://10.0.0.8/metadata",
                "https://[::1]/metadata"):
        with pytest.raises(UnsafeURL):
            refetch_metadata(url, strict, etag=None, last_modified=None, now=NOW)
