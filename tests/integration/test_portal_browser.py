"""The setup portal in headless Chromium: an IT admin opens a portal link, sets up a SAML connection
from the real saml-idp peer's metadata, verifies a domain against the test DNS server (seeing the
pending, failed and verified states, and DNS being unreachable), runs the test sign-in and sees each
check pass, pastes metadata with the wrong certificate and sees the test fail with the reason and the
remedy, and the link refuses a second use.
Every page passes axe-core, and no request leaves Keyhall's origin."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from keyhall.core.vocabulary import Role
from tests.support.accessibility import assert_accessible
from tests.support.api import auth
from tests.support.live import LiveKeyhall
from tests.support.saml_idp import SamlIdp
from tests.support.saml_material import make_certificate

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Request

pytestmark = pytest.mark.peers


def shot(page: Page, folder: Path, name: str) -> None:
    assert_accessible(page)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def check_domain(page: Page, name: str) -> None:
    page.get_by_role("button", name=f"Check now ({name})").click()


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


def run_test_sign_in(page: Page, context: BrowserContext, live: LiveKeyhall, connection_id: str, email: str,
                 folder: Path, name: str) -> None:
    """Press the connection's "Test sign-in" (a new tab), sign in at saml-idp, and leave ``page`` on
    the result page."""
    page.goto(f"{live.url}/portal/sso/connections/{connection_id}")
    with page.expect_popup() as opened:
        page.get_by_role("button", name="Test sign-in").click()
    tab = opened.value
    tab.wait_for_url("**/saml/sso?**")
    first, last = email.split("@")[0].title(), "Tester"
    for field, value in (("#userName", email), ("#email", email), ("#firstName", first), ("#lastName", last),
                         ("#displayName", f"{first} {last}")):
        tab.locator(field).fill(value)
    tab.locator("#btn-sign-in").click()
    tab.wait_for_url(f"{live.url}/test-sign-in/results/**")
    page.goto(tab.url)  # the same browser: the result is readable here too
    tab.close()
    shot(page, folder, name)


def test_an_it_admin_sets_up_saml_and_a_domain_in_the_portal(
    live_keyhall: LiveKeyhall, saml_idp: SamlIdp, browser_context: BrowserContext, tmp_path: Path
) -> None:
    from playwright.sync_api import expect  # the browser fixture reports a missing playwright first

    live, suffix = live_keyhall, uuid.uuid4().hex[:8]
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"Portal {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        org_id = org.json()["id"]
        owner = live.issue_key(org_id, Role.OWNER)
        made = api.post(f"/v1/organizations/{org_id}/portal-links", headers=auth(owner),
                        json={"intent": "sso", "return_url": "https://product.example/settings/sso"})
    assert made.status_code == 201, made.text
    link = made.json()["url"]
    assert link.startswith(live.url + "/portal/open/")

    requests: list[str] = []
    page = browser_context.new_page()

    def note(request: Request) -> None:
        requests.append(request.url)

    page.on("request", note)
    page.goto(link)
    assert page.url == live.url + "/portal/sso"  # the token left the address bar
    expect(page.get_by_role("heading", name="Single sign-on")).to_be_visible()
    expect(page.get_by_role("link", name="Return to the application")).to_have_attribute(
        "href", "https://product.example/settings/sso")
    shot(page, tmp_path, "01-sso")

    page.get_by_role("link", name="Another SAML 2.0 identity provider").click()
    expect(page.get_by_role("button", name="Copy ACS URL (Reply URL)")).to_be_visible()  # the copy script ran
    acs = page.locator("#acs-url").inner_text()
    audience = page.locator("#sp-entity-id").inner_text()
    shot(page, tmp_path, "02-new-saml")
    page.get_by_label("Connection name").fill("corp-saml")
    page.get_by_label("IdP metadata URL").fill("not a url")
    page.get_by_role("button", name="Create the connection").click()
    expect(page.get_by_role("alert")).to_contain_text("saml.metadata_url")  # named as the API names it
    expect(page.get_by_label("IdP metadata URL")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-saml-metadata_url-error")).to_contain_text("URL")
    shot(page, tmp_path, "03-field-error")
    page.get_by_label("IdP metadata URL").fill(saml_idp.metadata_url)
    page.get_by_role("button", name="Create the connection").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    expect(page.get_by_role("heading", name="1. At Another SAML 2.0 identity provider")).to_be_visible()
    assert page.locator("#acs-url").inner_text() == acs  # the URLs given to the IdP before saving still hold
    shot(page, tmp_path, "04-connection")
    connection_id = page.url.rsplit("/", 1)[1].split("?")[0]
    with live.api() as api:
        stored = api.get(f"/v1/organizations/{org_id}/connections/{connection_id}", headers=auth(owner)).json()
    assert stored["discovered"]["idp_entity_id"] == "urn:test:idp"
    assert stored["acs_url"] == acs

    for guide in ("oidc", "ldap", "entra"):  # every kind of guided form
        page.goto(f"{live.url}/portal/sso/new/{guide}")
        expect(page.get_by_role("button", name="Create the connection")).to_be_visible()
        shot(page, tmp_path, f"04-guide-{guide}")

    page.get_by_role("link", name="Certificates").click()
    expect(page.get_by_role("heading", name="corp-saml")).to_be_visible()
    shot(page, tmp_path, "05-certificates")

    domain, offline = f"portal-{suffix}.test", f"offline-{suffix}.test"
    page.get_by_role("link", name="Domains").click()
    for name in (domain, offline):
        page.get_by_label("Domain", exact=True).fill(name)
        page.get_by_role("button", name="Add the domain").click()
    section = page.get_by_role("region", name=domain)
    expect(section).to_contain_text("pending")
    shot(page, tmp_path, "06-pending")
    record_name = section.locator("code").nth(0).inner_text()
    record_value = section.locator("code").nth(1).inner_text()
    check_domain(page, domain)
    expect(page.get_by_role("region", name=domain)).to_contain_text("No matching record found")
    live.dns.servfail(f"_keyhall-challenge.{offline}")  # type: ignore[union-attr]
    check_domain(page, offline)
    expect(page.get_by_role("region", name=offline)).to_contain_text("DNS could not be reached")
    shot(page, tmp_path, "07-failed")
    live.dns.publish_txt(record_name, record_value)  # type: ignore[union-attr]
    check_domain(page, domain)
    expect(page.get_by_role("region", name=domain)).to_contain_text("verified")
    expect(page.get_by_role("region", name=domain)).not_to_contain_text("No matching record")
    shot(page, tmp_path, "08-verified")

    saml_idp.configure(audience=audience)  # the value the portal told the admin to give the IdP
    try:
        run_test_sign_in(page, browser_context, live, connection_id, f"erin@{domain}", tmp_path, "10-test-passed")
        expect(page.get_by_role("heading", name="Test sign-in passed")).to_be_visible()
        expect(page.get_by_role("rowheader", name="Signature and algorithm")).to_be_visible()
        expect(page.get_by_role("rowheader", name="Audience")).to_be_visible()
        expect(page.get_by_text(f"{domain} is a verified domain of this organization")).to_be_visible()
        with live.api() as api:
            tested = api.get(f"/v1/organizations/{org_id}/connections/{connection_id}", headers=auth(owner)).json()
        assert tested["is_verified"] is True

        # The IdP's metadata pasted with a certificate the IdP does not sign with: the test says so.
        page.goto(f"{live.url}/portal/sso/connections/{connection_id}")
        other_cert, _key = make_certificate("not-the-idp")
        wrong = re.sub(r"(<(?:\w+:)?X509Certificate>)[^<]+(</)",
                       lambda m: m.group(1) + pem_body(other_cert) + m.group(2), saml_idp.metadata_xml().decode())
        page.get_by_label("IdP metadata URL").fill("")
        page.get_by_label("IdP metadata XML").fill(wrong)
        page.get_by_role("button", name="Save and check").click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        run_test_sign_in(page, browser_context, live, connection_id, f"erin@{domain}", tmp_path, "11-test-failed")
        expect(page.get_by_role("heading", name="Test sign-in failed")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("certificate")
        with live.api() as api:
            tested = api.get(f"/v1/organizations/{org_id}/connections/{connection_id}", headers=auth(owner)).json()
        assert tested["is_verified"] is False
    finally:
        saml_idp.reset()

    again = browser_context.new_page()
    again.on("request", note)
    answer = again.goto(link)
    assert answer is not None
    assert answer.status == 410
    expect(again.get_by_role("heading")).to_contain_text("no longer works")
    shot(again, tmp_path, "09-used-link")

    assert requests
    assert [url for url in requests if not url.startswith(live.url + "/")] == []
    with live.api() as api:
        events = api.get(f"/v1/organizations/{org_id}/audit-events", headers=auth(owner)).json()["data"]
    by_portal = {e["action"] for e in events if e["actor"].startswith("portal-link:")}
    assert {"portal_link.opened", "connection.created", "domain.claimed", "domain.checked"} <= by_portal, by_portal


def test_an_it_admin_connects_a_directory_in_the_portal(
    live_keyhall: LiveKeyhall, browser_context: BrowserContext, tmp_path: Path
) -> None:
    from playwright.sync_api import expect  # the browser fixture reports a missing playwright first

    live, suffix = live_keyhall, uuid.uuid4().hex[:8]
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"Directory {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        owner = live.issue_key(org.json()["id"], Role.OWNER)
        made = api.post(f"/v1/organizations/{org.json()['id']}/portal-links", headers=auth(owner),
                        json={"intent": "directory_sync"})
    assert made.status_code == 201, made.text
    requests: list[str] = []
    page = browser_context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.goto(made.json()["url"])
    assert page.url == live.url + "/portal/directories"
    shot(page, tmp_path, "01-directories")
    page.get_by_label("Name").fill("Okta people")
    page.get_by_label("Identity provider").select_option("okta")
    page.get_by_role("button", name="Create the directory").click()
    expect(page.get_by_role("status")).to_contain_text("shown only this once")
    token = page.locator("code[id^=token-]").inner_text()
    shot(page, tmp_path, "02-token")
    with live.api() as api:  # the token shown is the SCIM bearer token
        scim = page.locator("code[id^=scim-]").inner_text()
        listed = api.get(f"{scim}/Users", headers=auth(token))
    assert listed.status_code == 200, listed.text
    page.goto(live.url + "/portal/directories")
    expect(page.locator("code[id^=token-]")).to_have_count(0)
    assert token not in page.content()
    page.goto(live.url + "/portal/sso")
    expect(page.get_by_role("heading")).to_contain_text("Not found")  # not part of this link
    assert [url for url in requests if not url.startswith(live.url + "/")] == []
