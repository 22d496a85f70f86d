"""SAML times at the ends of the calendar: parsed, compared and bounded without overflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyhall.errors import SamlResponseError
from keyhall.protocols.saml.times import MAX_ASSERTION_AGE, parse_xs_datetime, usable_until, within

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
FIRST = datetime(1, 1, 1, tzinfo=UTC)
SKEW = 60


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59-14:00",
                                   "0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00+14:00"])
def test_an_instant_outside_years_1_to_9999_in_utc_is_not_an_xs_datetime(value: str) -> None:
    with pytest.raises(ValueError, match="not an xs:dateTime"):
        parse_xs_datetime(value)


def test_the_ends_of_the_calendar_parse() -> None:
    assert parse_xs_datetime("9999-12-31T23:59:59Z") == LAST
    assert parse_xs_datetime("0001-01-01T00:00:00Z") == FIRST


def test_windows_at_the_ends_of_the_calendar_are_judged_without_overflow() -> None:
    within(NOW, SKEW, "x", not_before=FIRST, not_on_or_after=LAST)
    with pytest.raises(SamlResponseError) as refused:
        within(NOW, SKEW, "x", not_before=LAST)
    assert refused.value.reason == "not_yet_valid"
    with pytest.raises(SamlResponseError) as refused:
        within(NOW, SKEW, "x", not_on_or_after=FIRST)
    assert refused.value.reason == "expired"


def test_an_assertion_valid_until_9999_is_usable_an_hour_after_issue_at_most() -> None:
    issued = NOW - timedelta(seconds=2)
    end = usable_until(NOW, SKEW, issued, LAST, LAST)
    assert end == issued + MAX_ASSERTION_AGE + timedelta(seconds=SKEW)
    later = issued + MAX_ASSERTION_AGE + timedelta(seconds=SKEW)
    with pytest.raises(SamlResponseError) as refused:
        usable_until(later, SKEW, issued, LAST, LAST)
    assert refused.value.reason == "expired"


def test_the_earliest_stated_end_counts() -> None:
    end = NOW + timedelta(minutes=5)
    assert usable_until(NOW, SKEW, NOW, LAST, end, None) == end + timedelta(seconds=SKEW)


def test_an_assertion_issued_in_year_1_is_expired() -> None:
    with pytest.raises(SamlResponseError) as refused:
        usable_until(NOW, SKEW, FIRST, LAST)
    assert refused.value.reason == "expired"


def test_a_future_issue_instant_buys_no_time() -> None:
    assert usable_until(NOW, SKEW, LAST, LAST) <= NOW + MAX_ASSERTION_AGE + timedelta(seconds=2 * SKEW)
