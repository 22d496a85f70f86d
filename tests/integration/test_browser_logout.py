"""RP-Initiated Logout in a real browser: headless Chromium (Playwright) signs a person in through
Keyhall and the real npm oidc-provider, then the product sends the browser to ``/oauth2/logout``
with the ID token as ``id_token_hint``: the browser lands on the product's registered post-logout
page with its ``state``, and the sign-in's refresh token is dead. A logout link pointing anywhere
unregistered leaves the browser on Keyhall's page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.integration.test_access_revocation import refresh
from tests.integration.test_browser_signin import (
    Authorization,
    exchange_code,
    serve_product_callback,
    verified_claims,
)
from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.logout_receiver import LogoutReceiver, logout_receiver
from tests.support.oidc_idp import OidcIdp

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = pytest.mark.peers

@pytest.fixture(scope="module")
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as r:
        yield r


@pytest.fixture(scope="module")
def setup(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp, receiver: LogoutReceiver) -> SignInSetup:
    s = make_signin_setup(live_keyhall, oidc_idp, "BrowserLogout")
    with s.live.api() as api:
        patched = api.patch(f"/v1/applications/{s.client_id}", headers=auth(s.live.instance_token),
                            json={"post_logout_redirect_uris": [receiver.signed_out_url]})
    assert patched.status_code == 200, patched.text
    return s


def sign_in(page: Page, s: SignInSetup) -> dict[str, str]:
    """The whole sign-in in the browser, pinned to the connection; the product's tokens."""
    from playwright.sync_api import expect

    auth_request = Authorization.for_product(s)
    page.goto(f"{auth_request.url}&connection={s.connection['id']}")
    page.wait_for_url(f"{s.idp.base_url}/interaction/**")
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    expect(page.locator("input[name=prompt][value=consent]")).to_be_attached()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(s.product_redirect + "**")
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    tokens = exchange_code(s, code, auth_request.code_verifier)
    assert verified_claims(s, tokens["id_token"], auth_request.nonce)["sid"]
    return tokens


def test_logout_in_the_browser_returns_to_the_product_with_state(
        setup: SignInSetup, receiver: LogoutReceiver, browser_context: BrowserContext) -> None:
    from playwright.sync_api import expect

    s = setup
    page = browser_context.new_page()
    serve_product_callback(page, s)
    tokens = sign_in(page, s)

    query = urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": receiver.signed_out_url,
                       "state": "bye-123"})
    page.goto(f"{s.live.url}/oauth2/logout?{query}")
    page.wait_for_url(receiver.signed_out_url + "**")
    expect(page.get_by_text("Goodbye")).to_be_visible()
    assert receiver.signed_out_visits == ["/signed-out?state=bye-123"]

    refused = refresh(s, tokens["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"


def test_an_unregistered_post_logout_redirect_is_not_followed_by_the_browser(
        setup: SignInSetup, receiver: LogoutReceiver, browser_context: BrowserContext) -> None:
    from playwright.sync_api import expect

    s = setup
    page = browser_context.new_page()
    serve_product_callback(page, s)
    tokens = sign_in(page, s)
    # A real server that would record the visit: same host and port as the registered URI, other path.
    phishing = receiver.signed_out_url.replace("/signed-out", "/phish")
    visits_before = list(receiver.signed_out_visits)

    query = urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": phishing, "state": "x"})
    response = page.goto(f"{s.live.url}/oauth2/logout?{query}")
    assert response is not None
    assert response.status == 400
    expect(page.get_by_role("heading", name="This sign-out request cannot be completed")).to_be_visible()
    assert page.url.startswith(f"{s.live.url}/oauth2/logout")
    assert receiver.signed_out_visits == visits_before
    assert refresh(s, tokens["refresh_token"]).status_code == 200  # nothing was ended either
