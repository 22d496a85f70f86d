"""The rules of domain verification on their own: how a check's evidence changes a domain, when
the periodic job checks one, and how the DNS side reads its inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest

from keyhall.core.domain_service import (
    RECHECK_NEW_CLAIM,
    RECHECK_VERIFIED,
    VERIFIED_GRACE,
    Evidence,
    is_due,
    judge,
    look_up,
    parse_domain_name,
)
from keyhall.core.domains import Domain, new_domain
from keyhall.core.vocabulary import DomainStatus
from keyhall.errors import InvalidInput
from keyhall.idp.dns import TxtResolver, txt_value
from keyhall.protocols.dns import parse_server

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def domain(status: DomainStatus = DomainStatus.PENDING, **changes: object) -> Domain:
    d = new_domain("org-1", "corp.example", NOW - timedelta(days=1), token="tok")
    d.status = status
    for key, value in changes.items():
        setattr(d, key, value)
    return d


def accepted(d: Domain, *extra: str) -> frozenset[str]:
    return frozenset({d.record_value, *extra})


def test_the_record_to_publish() -> None:
    d = domain()
    assert d.record_name == "_keyhall-challenge.corp.example"
    assert d.record_value == "keyhall-verification=tok"


def test_proof_verifies_and_stamps_the_time() -> None:
    d = domain()
    verdict = judge(d, Evidence(values=("v=spf1 -all", " keyhall-verification=tok ")), accepted(d), NOW,
                    verified_elsewhere=False)
    assert (verdict.status, verdict.last_error, verdict.verified_at) == (DomainStatus.VERIFIED, None, NOW)
    assert not verdict.conflict
    assert not verdict.dns_failed


def test_another_accepted_value_verifies_too() -> None:
    d = domain(DomainStatus.FAILED)
    verdict = judge(d, Evidence(values=("raidiam-text",)), accepted(d, "raidiam-text"), NOW, verified_elsewhere=False)
    assert verdict.status is DomainStatus.VERIFIED


def test_proof_of_a_domain_verified_elsewhere_is_a_conflict() -> None:
    d = domain()
    verdict = judge(d, Evidence(values=(d.record_value,)), accepted(d), NOW, verified_elsewhere=True)
    assert verdict.status is DomainStatus.FAILED
    assert verdict.conflict
    assert verdict.last_error == "corp.example is verified by another organization"


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ((), "no TXT record at _keyhall-challenge.corp.example"),
        (("keyhall-verification=other",),
         "the TXT records at _keyhall-challenge.corp.example hold other values than 'keyhall-verification=tok'"),
        (("keyhall-verification=to", "k"), None),  # two records are not one split record
    ],
)
def test_no_proof_fails_a_pending_domain(values: tuple[str, ...], error: str | None) -> None:
    d = domain()
    verdict = judge(d, Evidence(values=values), accepted(d), NOW, verified_elsewhere=False)
    assert verdict.status is DomainStatus.FAILED
    assert verdict.verified_at is None
    if error is not None:
        assert verdict.last_error == error


def test_dns_failure_fails_a_pending_domain_with_the_reason() -> None:
    d = domain()
    verdict = judge(d, Evidence(failure="DNS timeout: no answer"), accepted(d), NOW, verified_elsewhere=False)
    assert (verdict.status, verdict.last_error) == (DomainStatus.FAILED, "DNS timeout: no answer")
    assert verdict.dns_failed


def test_dns_failure_keeps_a_verified_domain_however_long_it_lasts() -> None:
    seen = NOW - 10 * VERIFIED_GRACE
    d = domain(DomainStatus.VERIFIED, verified_at=seen)
    verdict = judge(d, Evidence(failure="DNS server 127.0.0.1:53 answered SERVFAIL for x"), accepted(d), NOW,
                    verified_elsewhere=False)
    assert verdict.status is DomainStatus.VERIFIED
    assert verdict.verified_at == seen
    assert verdict.last_error == ("DNS check failed, the domain stays verified: "
                                  "DNS server 127.0.0.1:53 answered SERVFAIL for x")


def test_a_missing_record_leaves_a_verified_domain_verified_during_the_grace_period() -> None:
    seen = NOW - timedelta(days=2)
    d = domain(DomainStatus.VERIFIED, verified_at=seen)
    verdict = judge(d, Evidence(), accepted(d), NOW, verified_elsewhere=True)
    assert verdict.status is DomainStatus.VERIFIED
    assert verdict.verified_at == seen
    assert verdict.last_error is not None
    assert verdict.last_error.endswith("the domain stays verified until 2026-03-06T12:00:00Z unless the record "
                                       "is restored")


def test_a_missing_record_unverifies_after_the_grace_period() -> None:
    d = domain(DomainStatus.VERIFIED, verified_at=NOW - VERIFIED_GRACE)
    verdict = judge(d, Evidence(values=("stale",)), accepted(d), NOW, verified_elsewhere=False)
    assert verdict.status is DomainStatus.FAILED
    assert verdict.last_error is not None
    assert "last seen 2026-02-22T12:00:00Z" in verdict.last_error
    assert verdict.last_error.endswith("the domain is no longer verified")


def test_a_verified_domain_keeps_its_proof_fresh() -> None:
    d = domain(DomainStatus.VERIFIED, verified_at=NOW - timedelta(days=3), last_error="old")
    verdict = judge(d, Evidence(values=(d.record_value,)), accepted(d), NOW, verified_elsewhere=True)
    assert (verdict.status, verdict.last_error, verdict.verified_at) == (DomainStatus.VERIFIED, None, NOW)
    assert not verdict.conflict


def test_errors_fit_the_stored_column() -> None:
    d = domain()
    verdict = judge(d, Evidence(failure="x" * 2000), accepted(d), NOW, verified_elsewhere=False)
    assert verdict.last_error is not None
    assert len(verdict.last_error) == 512


def test_when_the_job_checks_a_domain() -> None:
    assert is_due(domain(), NOW)  # never checked
    fresh = domain(DomainStatus.FAILED, last_checked_at=NOW - RECHECK_NEW_CLAIM + timedelta(seconds=1))
    assert not is_due(fresh, NOW)
    assert is_due(domain(DomainStatus.FAILED, last_checked_at=NOW - RECHECK_NEW_CLAIM), NOW)
    old_claim = domain(DomainStatus.FAILED, created_at=NOW - timedelta(days=30),
                       last_checked_at=NOW - timedelta(hours=1))
    assert not is_due(old_claim, NOW)
    assert is_due(domain(DomainStatus.FAILED, created_at=NOW - timedelta(days=30),
                         last_checked_at=NOW - timedelta(hours=24)), NOW)
    assert not is_due(domain(DomainStatus.VERIFIED, last_checked_at=NOW - timedelta(hours=23)), NOW)
    assert is_due(domain(DomainStatus.VERIFIED, last_checked_at=NOW - RECHECK_VERIFIED), NOW)


def test_look_up_keeps_answers_and_failures_apart() -> None:
    assert look_up(lambda name: [name], "a.example") == Evidence(values=("a.example",))
    assert look_up(lambda name: [], "a.example") == Evidence()

    def broken(name: str) -> list[str]:
        raise LookupError(f"DNS timeout for {name}")

    assert look_up(broken, "a.example") == Evidence(failure="DNS timeout for a.example")


@pytest.mark.parametrize("name", ["gmail.com", "Gmail.COM.", "@yahoo.com", "hotmail.com"])
def test_public_email_domains_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="public email domain"):
        parse_domain_name(name)


def test_a_claimed_name_is_normalized() -> None:
    assert parse_domain_name(" Corp.Example. ") == "corp.example"
    with pytest.raises(InvalidInput, match="domain:"):
        parse_domain_name("not a domain")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:5353", ("127.0.0.1", 5353)), ("10.0.0.2", ("10.0.0.2", 53)), ("[::1]:5300", ("::1", 5300)),
     ("::1", ("::1", 53)), ("[2001:db8::1]", ("2001:db8::1", 53))],
)
def test_resolver_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_server(value) == expected


@pytest.mark.parametrize("value", ["dns.example:53", "127.0.0.1:0", "127.0.0.1:dns", "[::1", "127.0.0.1:70000"])
def test_bad_resolver_addresses(value: str) -> None:
    with pytest.raises(ValueError, match="DNS resolver"):
        parse_server(value)


def test_a_bad_resolver_setting_is_reported_as_the_reason_a_check_failed() -> None:
    with pytest.raises(LookupError, match="KEYHALL_DNS_RESOLVER is unusable"):
        TxtResolver("dns.example:53", timeout=0.1)("_keyhall-challenge.corp.example")


def test_a_txt_record_of_several_strings_is_their_concatenation() -> None:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, '"keyhall-verification=" "abc" "def"')
    assert isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
    assert txt_value(rdata) == "keyhall-verification=abcdef"
