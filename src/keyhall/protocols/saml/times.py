"""Time in SAML 2.0: xs:dateTime values (saml-core-2.0-os §1.3.3), validity windows judged with a
clock skew (§2.5.1.2, §2.4.1.2, §2.7.2), and how long an assertion stays usable.

An IdP may write any instant from 0001-01-01 to 9999-12-31, and a signature makes none of them
sensible. Every comparison therefore moves ``now`` (a present-day instant) by the skew and never
the asserted instant: 9999-12-31T23:59:59Z plus a minute does not exist (``OverflowError``).

An assertion is usable until the earliest of its NotOnOrAfter times, and never longer than
``MAX_ASSERTION_AGE`` after its IssueInstant (which may not be in the future), whatever those say.
The replay cache keeps an assertion's ID until then (:func:`usable_until`), so what it stores is
bounded too: never past ``now`` + ``MAX_ASSERTION_AGE`` + twice the skew. Forgetting an ID then is
safe because the same assertion, posted again after that instant, is refused here as expired
before the cache is asked.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from lxml import etree

from keyhall.errors import SamlReason, SamlResponseError

__all__ = ["MAX_ASSERTION_AGE", "instant", "optional_instant", "parse_xs_datetime", "usable_until", "within"]

#: How long after its IssueInstant an assertion may be used at all. IdPs issue assertions for the
#: browser to post at once (minutes at most); an hour leaves room for slow hops and clocks.
MAX_ASSERTION_AGE = timedelta(hours=1)

# xs:dateTime (XML Schema Part 2 §3.2.7); SAML asks for UTC (saml-core-2.0-os §1.3.3).
_XS_DATETIME = re.compile(r"\A(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?\Z")
_MAX_SHOWN = 60


def parse_xs_datetime(value: str) -> datetime:
    """Parse an xs:dateTime (XML Schema Part 2 §3.2.7) into an aware UTC datetime.

    A value without a time zone is read as UTC, as SAML requires (saml-core-2.0-os §1.3.3).
    Raises ``ValueError`` when the value is not an xs:dateTime, or names an instant outside
    years 1-9999 once moved to UTC (0001-01-01T00:00:00+01:00).
    """
    match = _XS_DATETIME.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an xs:dateTime: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    microseconds = int((fraction or "0")[:6].ljust(6, "0"))
    text = f"{year}-{month}-{day}T{hour}:{minute}:{second}.{microseconds:06d}"
    text += "+00:00" if zone in (None, "Z") else zone
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):  # a field out of range (month 13, hour 25), or a year past 9999 in UTC
        raise ValueError(f"not an xs:dateTime: {value!r}") from None


def _refuse(message: str, reason: SamlReason) -> NoReturn:
    raise SamlResponseError(message, reason=reason)


def _shown(raw: str) -> str:
    flat = " ".join(raw.split())
    return flat if len(flat) <= _MAX_SHOWN else flat[: _MAX_SHOWN - 3] + "..."


def instant(element: etree._Element, attribute: str, what: str) -> datetime:
    """The required xs:dateTime ``attribute`` of ``element`` (``malformed`` when absent or not one)."""
    raw = element.get(attribute)
    if raw is None:
        _refuse(f"the {what} has no {attribute}", "malformed")
    try:
        return parse_xs_datetime(raw)
    except ValueError:
        _refuse(f'the {what}\'s {attribute} "{_shown(raw)}" is not an xs:dateTime', "malformed")


def optional_instant(element: etree._Element, attribute: str, what: str) -> datetime | None:
    return instant(element, attribute, what) if element.get(attribute) is not None else None


def within(now: datetime, skew_seconds: int, what: str, *, not_before: datetime | None = None,
           not_on_or_after: datetime | None = None) -> None:
    """saml-core-2.0-os §2.5.1.2: NotBefore <= now < NotOnOrAfter, each widened by the skew.
    Refused as ``not_yet_valid`` or ``expired``."""
    skew = timedelta(seconds=skew_seconds)
    if not_before is not None and not_before > now + skew:
        _refuse(f"{what} ({not_before.isoformat()}) is in the future; check the clocks", "not_yet_valid")
    if not_on_or_after is not None and now - skew >= not_on_or_after:
        _refuse(f"{what} ({not_on_or_after.isoformat()}) has passed", "expired")


def usable_until(now: datetime, skew_seconds: int, issued: datetime, *ends: datetime | None) -> datetime:
    """The last instant, skew included, the assertion issued at ``issued`` may be used, given its
    NotOnOrAfter times ``ends`` (the earliest counts): what the replay cache keeps its ID until.
    Refused as ``expired`` when now is past it, in particular when the assertion is more than
    ``MAX_ASSERTION_AGE`` old."""
    skew = timedelta(seconds=skew_seconds)
    oldest_usable = min(issued, now + skew) + MAX_ASSERTION_AGE  # a future IssueInstant buys nothing
    stated = [end for end in ends if end is not None]
    end = min([*stated, oldest_usable])
    if now - skew >= oldest_usable and end == oldest_usable:
        _refuse(f"the Assertion was issued at {issued.isoformat()}, more than {MAX_ASSERTION_AGE} ago", "expired")
    within(now, skew_seconds, "the assertion's validity", not_on_or_after=end)
    return end + skew
