"""The setup portal over HTTP: issuing links (roles, validation, tenancy, audit), a link that opens
once and only while fresh, the session it starts (scoped, time-limited, CSRF-protected), and the
portal's forms calling the same services as the native API."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.web.portal import COOKIE
from tests.support.api import Keyhall, Tenant, auth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saml"


@pytest.fixture(scope="module")
def tenants(keyhall: Keyhall) -> tuple[Tenant, Tenant]:
    return keyhall.tenant("Portal One"), keyhall.tenant("Portal Two")


def make_link(keyhall: Keyhall, tenant: Tenant, intent: str = "sso", **extra: object) -> str:
    response = keyhall.client.post(f"/v1/organizations/{tenant.id}/portal-links", json={"intent": intent, **extra},
                                   headers=auth(tenant.owner))
    assert response.status_code == 201, response.text
    return urlsplit(response.json()["url"]).path


@pytest.fixture
def browser(keyhall: Keyhall) -> Iterator[TestClient]:
    """A browser of its own (its own cookie jar) on the shared app."""
    with TestClient(create_app(keyhall.runtime.settings, keyhall.runtime), raise_server_exceptions=False) as client:
        yield client


def open_portal(keyhall: Keyhall, tenant: Tenant, browser: TestClient, intent: str = "sso") -> str:
    """Open a fresh link in ``browser``; the CSRF token of the page it lands on."""
    opened = browser.get(make_link(keyhall, tenant, intent), follow_redirects=False)
    assert opened.status_code == 303, opened.text
    landing = browser.get(opened.headers["location"])
    assert landing.status_code == 200, landing.text
    if intent in ("sso", "certificate_renewal"):
        landing = browser.get("/portal/sso/new/saml")  # a page with a form
    found = re.search(r'name="csrf" value="([^"]+)"', landing.text)
    assert found is not None
    return found.group(1)


def test_creating_a_link_answers_a_url_and_expiry_and_is_audited(keyhall: Keyhall,
                                                                 tenants: tuple[Tenant, Tenant]) -> None:
    one, _ = tenants
    response = keyhall.client.post(f"/v1/organizations/{one.slug}/portal-links",
                                   json={"intent": "domain_verification", "return_url": "https://app.example/settings"},
                                   headers=auth(one.owner))
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"url", "expires_at"}
    assert body["url"].startswith("http://keyhall.test/portal/open/")
    token = body["url"].rsplit("/", 1)[1]
    assert len(token) >= 40
    events = keyhall.client.get(f"/v1/organizations/{one.id}/audit-events", params={"action": "portal_link.created"},
                                headers=auth(one.owner)).json()["data"]
    assert events
    assert events[0]["actor"].startswith("key:")
    assert token not in str(events)  # only a hash of the token is kept anywhere


@pytest.mark.parametrize(("body", "field"), [
    ({"intent": "everything"}, "intent"),
    ({}, "intent"),
    ({"intent": "sso", "return_url": "javascript:alert(1)"}, "return_url"),
    ({"intent": "sso", "return_url": "/relative"}, "return_url"),
    ({"intent": "sso", "return_url": "https://user:pw@app.example/"}, "return_url"),
    ({"intent": "sso", "extra": 1}, "extra"),
])
def test_bad_link_requests_are_400_naming_the_field(keyhall: Keyhall, tenants: tuple[Tenant, Tenant],
                                                    body: dict[str, object], field: str) -> None:
    one, _ = tenants
    response = keyhall.client.post(f"/v1/organizations/{one.id}/portal-links", json=body, headers=auth(one.owner))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"]


def test_only_sso_writers_create_links_and_other_orgs_are_404(keyhall: Keyhall,
                                                               tenants: tuple[Tenant, Tenant]) -> None:
    one, two = tenants
    path = f"/v1/organizations/{one.id}/portal-links"
    assert keyhall.client.post(path, json={"intent": "sso"}, headers=auth(one.viewer)).status_code == 403
    assert keyhall.client.post(path, json={"intent": "sso"}, headers=auth(one.admin)).status_code == 403
    assert keyhall.client.post(path, json={"intent": "sso"}, headers=auth(two.owner)).status_code == 404
    assert keyhall.client.post(path, json={"intent": "sso"}).status_code == 401
    allowed = keyhall.client.patch(f"/v1/organizations/{one.id}", json={"admins_may_configure_sso": True},
                                   headers=auth(one.owner))
    assert allowed.status_code == 200, allowed.text
    try:
        assert keyhall.client.post(path, json={"intent": "sso"}, headers=auth(one.admin)).status_code == 201
    finally:
        keyhall.client.patch(f"/v1/organizations/{one.id}", json={"admins_may_configure_sso": False},
                             headers=auth(one.owner))


def test_a_link_opens_once_and_sets_a_scoped_cookie(keyhall: Keyhall, tenants: tuple[Tenant, Tenant],
                                                    browser: TestClient) -> None:
    one, _ = tenants
    path = make_link(keyhall, one, "directory_sync")
    opened = browser.get(path, follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/portal/directories"  # the token leaves the address bar
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "Path=/portal" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie
    again = browser.get(path, follow_redirects=False)
    assert again.status_code == 410
    assert "already used" in again.text
    assert browser.get("/portal/open/" + "x" * 43).status_code == 404
    events = keyhall.client.get(f"/v1/organizations/{one.id}/audit-events", params={"action": "portal_link.opened"},
                                headers=auth(one.owner)).json()["data"]
    assert any(e["actor"].startswith("portal-link:") for e in events)


def test_a_link_expires_unopened_and_a_session_ends(keyhall: Keyhall, tenants: tuple[Tenant, Tenant],
                                                    browser: TestClient) -> None:
    one, _ = tenants
    runtime = keyhall.runtime
    real = runtime.clock
    stale = make_link(keyhall, one)
    runtime.clock = lambda: real() + timedelta(seconds=runtime.settings.portal_link_ttl_seconds + 1)
    try:
        refused = browser.get(stale, follow_redirects=False)
    finally:
        runtime.clock = real
    assert refused.status_code == 410
    assert "expired" in refused.text
    open_portal(keyhall, one, browser)
    runtime.clock = lambda: real() + timedelta(seconds=runtime.settings.portal_session_ttl_seconds + 1)
    try:
        ended = browser.get("/portal/sso")
    finally:
        runtime.clock = real
    assert ended.status_code == 403
    assert "ended" in ended.text
    assert browser.get("/portal/sso").status_code == 200


def test_without_a_session_the_portal_is_refused(browser: TestClient) -> None:
    for path in ("/portal/sso", "/portal/domains", "/portal/directories", "/portal/certificates"):
        response = browser.get(path)
        assert response.status_code == 403, path
    browser.cookies.set(COOKIE, "forged", path="/portal")
    assert browser.get("/portal/sso").status_code == 403


def test_the_session_sees_only_its_intent_and_its_organization(keyhall: Keyhall, tenants: tuple[Tenant, Tenant],
                                                               browser: TestClient) -> None:
    one, two = tenants
    metadata = (FIXTURES / "metadata-google-workspace.xml").read_text()
    made = keyhall.client.post(f"/v1/organizations/{two.id}/connections", headers=auth(two.owner),
                               json={"protocol": "saml", "name": "two-corp", "saml": {"metadata_xml": metadata}})
    assert made.status_code == 201, made.text
    domain = f"two-{uuid.uuid4().hex[:8]}.test"
    other_domain = keyhall.client.post(f"/v1/organizations/{two.id}/domains", json={"domain": domain},
                                       headers=auth(two.owner))
    assert other_domain.status_code == 201, other_domain.text
    open_portal(keyhall, one, browser, "domain_verification")
    assert browser.get("/portal/sso").status_code == 404  # not what the link was made for
    assert browser.get("/portal/directories").status_code == 404
    page = browser.get("/portal/domains")
    assert domain not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    foreign = browser.post(f"/portal/domains/{other_domain.json()['id']}/verify", data={"csrf": csrf})
    assert foreign.status_code == 404
    csrf = open_portal(keyhall, one, browser, "sso")
    foreign_id = made.json()["id"]
    assert browser.get(f"/portal/sso/connections/{foreign_id}").status_code == 404
    renamed = browser.post(f"/portal/sso/connections/{foreign_id}", data={"csrf": csrf, "name": "taken"})
    assert renamed.status_code == 404
    assert "two-corp" not in browser.get("/portal/sso").text
    assert "two-corp" not in browser.get("/portal/certificates").text


def test_forged_posts_are_refused_and_change_nothing(keyhall: Keyhall, tenants: tuple[Tenant, Tenant],
                                                     browser: TestClient) -> None:
    one, _ = tenants
    csrf = open_portal(keyhall, one, browser, "domain_verification")
    name = "forged-portal.test"
    assert browser.post("/portal/domains", data={"domain": name}).status_code == 403
    assert browser.post("/portal/domains", data={"domain": name, "csrf": "wrong"}).status_code == 403
    cross = browser.post("/portal/domains", data={"domain": name, "csrf": csrf},
                         headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    listed = keyhall.client.get(f"/v1/organizations/{one.id}/domains", headers=auth(one.owner)).json()["data"]
    assert name not in [d["domain"] for d in listed]
    good = browser.post("/portal/domains", data={"domain": name, "csrf": csrf},
                        headers={"Origin": "http://keyhall.test"}, follow_redirects=False)
    assert good.status_code == 303, good.text
    events = keyhall.client.get(f"/v1/organizations/{one.id}/audit-events", params={"action": "domain.claimed"},
                                headers=auth(one.owner)).json()["data"]
    assert any(e["actor"].startswith("portal-link:") for e in events)


def test_portal_forms_show_the_api_s_field_messages(keyhall: Keyhall, tenants: tuple[Tenant, Tenant],
                                                    browser: TestClient) -> None:
    one, _ = tenants
    csrf = open_portal(keyhall, one, browser, "sso")
    bad = browser.post("/portal/sso/new/saml", data={"csrf": csrf, "name": "", "saml.metadata_url": "not a url"})
    assert bad.status_code == 400
    assert 'aria-invalid="true"' in bad.text
    api = keyhall.client.post(f"/v1/organizations/{one.id}/connections", headers=auth(one.owner),
                              json={"protocol": "saml", "name": "x", "saml": {"metadata_url": "not a url"}})
    assert api.status_code == 400
    assert api.json()["error"]["message"].split(":")[0] in bad.text  # the same field is named
    oidc = browser.post("/portal/sso/new/oidc", data={"csrf": csrf, "name": "o", "oidc.client_secret": "s3cr3t-value"})
    assert oidc.status_code == 400
    assert "oidc.client_id" in oidc.text
    assert "s3cr3t-value" not in oidc.text  # secrets are never written back into a page


def test_directory_token_is_shown_once(keyhall: Keyhall, tenants: tuple[Tenant, Tenant], browser: TestClient) -> None:
    one, _ = tenants
    csrf = open_portal(keyhall, one, browser, "directory_sync")
    made = browser.post("/portal/directories", data={"csrf": csrf, "name": "Okta people", "provider": "okta"})
    assert made.status_code == 201, made.text
    token = re.search(r'<code id="token-[^"]+">([^<]+)<', made.text)
    assert token is not None
    assert "/scim/v2/" in made.text
    assert "shown only this once" in made.text
    again = browser.get("/portal/directories")
    assert token.group(1) not in again.text
    bad = browser.post("/portal/directories", data={"csrf": csrf, "name": "x", "provider": "nope"})
    assert bad.status_code == 400
    assert "provider" in bad.text
    events = keyhall.client.get(f"/v1/organizations/{one.id}/audit-events", params={"action": "directory.created"},
                                headers=auth(one.owner)).json()["data"]
    assert any(e["actor"].startswith("portal-link:") for e in events)


def test_a_saml_connection_set_up_in_the_portal_keeps_the_urls_shown_before(
        keyhall: Keyhall, tenants: tuple[Tenant, Tenant], browser: TestClient) -> None:
    one, _ = tenants
    csrf = open_portal(keyhall, one, browser, "sso")
    before = browser.get("/portal/sso/new/google").text
    acs = re.search(r'<code id="acs-url">([^<]+)<', before)
    assert acs is not None
    assert "/saml/acs" in acs.group(1)
    metadata = (FIXTURES / "metadata-google-workspace.xml").read_text()
    made = browser.post("/portal/sso/new/google", follow_redirects=False,
                        data={"csrf": csrf, "name": f"google-{uuid.uuid4().hex[:6]}", "saml.metadata_xml": metadata})
    assert made.status_code == 303, made.text
    page = browser.get(made.headers["location"])
    assert page.status_code == 200
    assert acs.group(1) in page.text
    assert "Saved" in page.text
    connection_id = made.headers["location"].split("/")[-1].split("?")[0]
    stored = keyhall.client.get(f"/v1/organizations/{one.id}/connections/{connection_id}", headers=auth(one.owner))
    assert stored.json()["acs_url"] == acs.group(1)
    assert stored.json()["provider"] == "google_workspace"
    events = keyhall.client.get(f"/v1/organizations/{one.id}/audit-events", params={"action": "connection.created"},
                                headers=auth(one.owner)).json()["data"]
    assert any(e["actor"].startswith("portal-link:") and e["target_id"] == connection_id for e in events)
    assert acs.group(1) not in browser.get("/portal/sso/new/google").text  # the next one gets a new id
    certificates = browser.get("/portal/certificates")
    assert certificates.status_code == 200
    assert connection_id in certificates.text


def test_hostile_portal_input_is_a_clear_4xx(keyhall: Keyhall, tenants: tuple[Tenant, Tenant],
                                            browser: TestClient) -> None:
    one, _ = tenants
    assert browser.get("/portal/open/" + "a" * 5000).status_code == 404
    csrf = open_portal(keyhall, one, browser, "domain_verification")
    many = {f"f{i}": "x" for i in range(200)} | {"csrf": csrf}
    assert browser.post("/portal/domains", data=many).status_code == 400
    upload = browser.post("/portal/domains", data={"csrf": csrf}, files={"domain": ("a.txt", b"example.com")})
    assert upload.status_code == 400
    odd = browser.post("/portal/domains", data={"csrf": csrf, "domain": "exa\x00mple.com"})
    assert odd.status_code == 400
    assert "domain" in odd.text


def test_the_cookie_is_secure_when_keyhall_is_served_over_https(keyhall: Keyhall,
                                                                tenants: tuple[Tenant, Tenant]) -> None:
    one, _ = tenants
    settings = keyhall.runtime.settings.model_copy(update={"public_url": "https://keyhall.test"})
    runtime = dataclasses.replace(keyhall.runtime, settings=settings)
    with TestClient(create_app(settings, runtime), base_url="https://keyhall.test") as client:
        made = client.post(f"/v1/organizations/{one.id}/portal-links", json={"intent": "sso"}, headers=auth(one.owner))
        assert made.status_code == 201, made.text
        assert made.json()["url"].startswith("https://keyhall.test/portal/open/")
        opened = client.get(urlsplit(made.json()["url"]).path, follow_redirects=False)
    assert opened.status_code == 303
    assert "Secure" in opened.headers["set-cookie"]


def test_a_connection_is_edited_in_the_portal_and_a_stale_field_is_named(
        keyhall: Keyhall, tenants: tuple[Tenant, Tenant], browser: TestClient) -> None:
    one, _ = tenants
    csrf = open_portal(keyhall, one, browser, "certificate_renewal")  # renewal opens the connection's page too
    metadata = (FIXTURES / "metadata-google-workspace.xml").read_text()
    made = keyhall.client.post(f"/v1/organizations/{one.id}/connections", headers=auth(one.owner), json={
        "protocol": "saml", "name": f"edit-{uuid.uuid4().hex[:6]}", "saml": {"metadata_xml": metadata}})
    assert made.status_code == 201, made.text
    path = f"/portal/sso/connections/{made.json()['id']}"
    page = browser.get(path)
    assert page.status_code == 200
    assert 'value="' + made.json()["name"] + '"' in page.text  # the stored settings fill the form
    renamed = browser.post(path, data={"csrf": csrf, "name": "renamed-in-portal"}, follow_redirects=False)
    assert renamed.status_code == 303, renamed.text
    bad = browser.post(path, data={"csrf": csrf, "saml.sso_url": "ftp://idp.example/sso"})
    assert bad.status_code == 400
    assert 'id="f-saml-sso_url-error"' in bad.text
    stored = keyhall.client.get(f"/v1/organizations/{one.id}/connections/{made.json()['id']}",
                                headers=auth(one.owner)).json()
    assert stored["name"] == "renamed-in-portal"
    assert stored["saml"].get("sso_url") != "ftp://idp.example/sso"  # nothing half written
    events = keyhall.client.get(f"/v1/organizations/{one.id}/audit-events", headers=auth(one.owner),
                                params={"action": "connection.updated", "target_id": made.json()["id"]}).json()["data"]
    assert [e["actor"].split(":")[0] for e in events] == ["portal-link"]
    assert browser.get("/portal/domains").status_code == 404  # renewal does not open domains
