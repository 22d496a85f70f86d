"""The setup portal's pure rules (``keyhall.core.portal``): return URLs, intents, what a session
may see, the CSRF and Origin check, and how a domain's last check is told apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyhall.core import portal
from keyhall.core.portal import Area, Intent, PortalSession
from keyhall.errors import InvalidInput, NotFound, PermissionDenied

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def session(intent: Intent = Intent.SSO) -> PortalSession:
    return PortalSession(id="s", link_id="l", organization_id="o", intent=intent, secret_hash="h", csrf_token="tok",
                         return_url=None, draft_connection_id="d", created_at=NOW, expires_at=NOW + timedelta(hours=1))


@pytest.mark.parametrize("url", ["https://app.example/settings", "http://127.0.0.1:3000/back?x=1"])
def test_absolute_http_return_urls_are_kept(url: str) -> None:
    assert portal.check_return_url(url) == url


@pytest.mark.parametrize("url", ["javascript:alert(1)", "/settings", "//app.example/x", "ftp://app.example/",
                                 "https://user:pw@app.example/", "https://app.example/a b", "https:///nohost",
                                 "https://app.example/" + "a" * 2100])
def test_other_return_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        portal.check_return_url(url)
    assert caught.value.field == "return_url"


def test_unknown_intents_are_refused() -> None:
    with pytest.raises(InvalidInput, match="intent"):
        portal.parse_intent("admin")


def test_a_session_sees_only_the_areas_of_its_intent() -> None:
    portal.require_area(session(Intent.SSO), Area.DOMAINS)
    with pytest.raises(NotFound):
        portal.require_area(session(Intent.DOMAIN_VERIFICATION), Area.CONNECTIONS)
    with pytest.raises(NotFound):
        portal.require_area(session(Intent.DIRECTORY_SYNC), Area.CERTIFICATES)


def test_csrf_needs_the_session_token_and_keyhall_s_origin() -> None:
    public = "https://sso.example.com"
    portal.check_csrf(session(), "tok", origin=None, public_url=public)
    portal.check_csrf(session(), "tok", origin="https://sso.example.com", public_url=public)
    for given, origin in (("", None), ("other", None), ("tok", "https://evil.example"), ("tok", "null"),
                          ("tok", "http://sso.example.com"), ("\udcff", None)):
        with pytest.raises(PermissionDenied):
            portal.check_csrf(session(), given, origin=origin, public_url=public)


def test_the_session_acts_as_its_link() -> None:
    principal = portal.principal_for(session())
    assert principal.actor == "portal-link:l"
    assert principal.organization_id == "o"
    assert not principal.instance_admin


@pytest.mark.parametrize(("last_error", "problem"), [
    (None, None),
    ("no TXT record at _keyhall-challenge.example.com", "no_record"),
    ("the TXT records at _keyhall-challenge.example.com hold other values than 'x'", "no_record"),
    ("DNS server 127.0.0.1:53 did not answer", "dns_unreachable"),
    ("DNS check failed, the domain stays verified: timeout", "dns_unreachable"),
    ("example.com is verified by another organization", "taken"),
])
def test_a_domain_s_last_check_is_told_apart(last_error: str | None, problem: str | None) -> None:
    assert portal.domain_problem(last_error) == problem
