"""Accessibility (WCAG 2.1 AA, by axe-core in headless Chromium) of every hosted page a person
can meet while signing in or out, and of the development-mode pages: none has a serious or
critical violation, and none makes a request that leaves Keyhall's origin.

One dev-mode Keyhall for the module, one browser context for the test. Pages reached by a real
request are opened at their URL; the three forms that need a connection kind this server has no
peer for (the chooser, the password form, the LDAP form) are the responses Keyhall's own renderer
makes for those steps, served at a URL of Keyhall's origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

import pytest

from keyhall.dev.idp import DevIdp
from keyhall.dev.saml_idp import DevSamlIdp, xmlsec_available
from keyhall.dev.seed import seed
from keyhall.login.steps import Choice, ChooseConnection, LdapForm, PasswordForm, Step
from keyhall.web.rendering import render
from tests.support.accessibility import assert_accessible
from tests.support.live import LiveKeyhall, serving_keyhall
from tests.support.peers import peer_unavailable

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Route

RENDERED: dict[str, Step] = {
    "chooser": ChooseConnection(choices=[Choice("Sign in with Okta", "/sso/c1/start"),
                                         Choice("Sign in with Entra ID", "/sso/c2/start")],
                                password_url="/login/password?tx=t"),
    "password": PasswordForm(tx_id="t", csrf="c", email="alice@example.com",
                             message="That email and password do not match.", status=401),
    "ldap": LdapForm(connection_id="c3", directory="Example Corp directory", tx_id="t", csrf="c",
                     username="alice", message="That username and password do not match.", status=401),
}


@pytest.fixture(scope="module")
def dev_keyhall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKeyhall]:
    if not xmlsec_available():
        peer_unavailable("the xmlsec1 program is missing (Debian package xmlsec1; run `make system-deps`)")
    with serving_keyhall(Path(tmp_path_factory.mktemp("a11y-data")), tmp_path_factory.mktemp("a11y-db"),
                         dev=True) as server:
        yield server


def _serve_rendered(page: Page, base: str) -> None:
    def fulfil(route: Route) -> None:
        response = render(RENDERED[urlsplit(route.request.url).path.rsplit("/", 1)[1]])
        route.fulfill(status=response.status_code, headers=dict(response.headers), body=bytes(response.body))

    page.route(f"{base}/_rendered/*", fulfil)


def _check(page: Page, url: str, *, status: int | None = None) -> None:
    response = page.goto(url)
    assert response is not None
    if status is not None:
        assert response.status == status, (url, response.status)
    assert page.title().endswith("· Keyhall"), (url, page.title())
    assert_accessible(page)


def test_every_sign_in_page_is_accessible_and_stays_on_keyhalls_origin(
    dev_keyhall: LiveKeyhall, browser_context: BrowserContext
) -> None:
    from playwright.sync_api import expect

    base = dev_keyhall.url
    runtime = dev_keyhall.runtime
    idp = DevIdp.for_settings(runtime.settings)
    demo = seed(runtime, idp, DevSamlIdp(runtime.settings.public_url, idp.issuer, runtime.settings.data_dir))
    assert demo.saml_connection is not None
    requested: list[str] = []
    browser_context.on("request", lambda request: requested.append(request.url))
    page = browser_context.new_page()
    _serve_rendered(page, base)

    # The email page, as an authorization request with nothing to route by opens it; then with its error.
    authorize = f"{base}/oauth2/authorize?" + urlencode({
        "response_type": "code", "client_id": demo.client_id, "redirect_uri": demo.redirect_uri,
        "scope": "openid email", "state": "s", "code_challenge": "x" * 43, "code_challenge_method": "S256"})
    _check(page, authorize, status=200)
    page.get_by_role("textbox", name="Work email").fill("nobody@unknown.test")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert_accessible(page)
    page.emulate_media(color_scheme="dark")  # the pages follow the system's scheme: both must read
    assert_accessible(page)
    page.emulate_media(color_scheme="light")

    for name in RENDERED:
        _check(page, f"{base}/_rendered/{name}")

    # Refusals: an unknown application, a malformed sign-out, a SAML logout message that is not one.
    _check(page, f"{base}/oauth2/authorize?client_id=unknown&response_type=code", status=400)
    _check(page, f"{base}/oauth2/logout?id_token_hint=not-a-token", status=400)
    _check(page, f"{base}/sso/unknown/saml/slo?SAMLRequest=bm90", status=404)
    _check(page, f"{base}/sso/{demo.saml_connection}/saml/slo?SAMLRequest=bm90", status=400)
    # The signed-out page (RP-initiated logout with nothing to end).
    _check(page, f"{base}/oauth2/logout", status=200)

    # Development mode: the example product, the test IdP's pages, and the claims after a sign-in.
    _check(page, f"{base}/_dev/app", status=200)
    page.get_by_role("link", name="Sign in with OpenID Connect").click()
    page.wait_for_url(f"{base}/_dev/idp/authorize?**")
    assert_accessible(page)
    page.get_by_role("button").first.click()
    page.wait_for_url(f"{base}/_dev/app/callback?**")
    expect(page.locator("#claims")).to_be_visible()
    assert_accessible(page)
    page.goto(f"{base}/_dev/app")
    page.get_by_role("link", name="Sign in with SAML").click()
    page.wait_for_url(f"{base}/_dev/idp/saml/sso?**")
    assert_accessible(page)
    page.get_by_role("button").first.click()
    expect(page.get_by_role("button", name="Continue to Keyhall")).to_be_visible()
    assert_accessible(page)  # the page that posts the SAML response on
    _check(page, f"{base}/_dev/app/callback?code=x&state=y", status=400)
    _check(page, f"{base}/_dev/idp/authorize?redirect_uri=https://elsewhere.test/", status=400)
    _check(page, f"{base}/_dev/idp/saml/sso?SAMLRequest=bm90", status=400)

    left = [u for u in requested if urlsplit(u).scheme in ("http", "https") and not u.startswith(base + "/")]
    assert left == []


def test_the_check_names_every_serious_violation(browser_context: BrowserContext) -> None:
    page = browser_context.new_page()
    page.set_content('<html><head><title>Broken</title></head><body><main><h1>Broken</h1>'
                     '<p style="color:#bbb;background:#fff">faint text</p>'
                     '<form><input id="unlabelled" type="text"></form></main></body></html>')
    with pytest.raises(AssertionError) as failed:
        assert_accessible(page)
    report = str(failed.value)
    assert "color-contrast (serious)" in report
    assert "html-has-lang (serious)" in report
    assert "#unlabelled" in report  # the label rule names the node it found
