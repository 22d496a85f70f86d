"""The hosted login pages in a real browser: headless Chromium (Playwright) signs a person in by
typing their work email at Keyhall, is sent by home-realm discovery to the real npm
oidc-provider, and comes back to the product with a code the product exchanges for an ID token."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.oidc_idp import OidcIdp

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page, Route

pytestmark = pytest.mark.peers

PRODUCT_PAGE = "<!doctype html><html lang=en><title>Product</title><p>Signed in</p></html>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Browser")


@dataclass(frozen=True)
class Authorization:
    """What the product remembers about one authorization request it sent the browser with."""

    url: str
    state: str
    nonce: str
    code_verifier: str

    @classmethod
    def for_product(cls, s: SignInSetup) -> Authorization:
        """No login_hint, organization or connection: Keyhall has to ask for the email."""
        state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=")
        query = urlencode({
            "response_type": "code", "client_id": s.client_id, "redirect_uri": s.product_redirect,
            "scope": "openid email profile", "state": state, "nonce": nonce,
            "code_challenge": challenge.decode("ascii"), "code_challenge_method": "S256",
        })
        return cls(url=f"{s.live.url}/oauth2/authorize?{query}", state=state, nonce=nonce, code_verifier=verifier)


def serve_product_callback(page: Page, s: SignInSetup) -> list[str]:
    """Nothing listens at the product's redirect URI: answer it in the browser; returns the URLs it got."""
    delivered: list[str] = []

    def product(route: Route) -> None:
        delivered.append(route.request.url)
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=PRODUCT_PAGE)

    page.route(s.product_redirect + "**", product)
    return delivered


def login_cookie(context: BrowserContext) -> list[str]:
    return [str(c.get("value")) for c in context.cookies() if c.get("name") == "keyhall_login"]


def exchange_code(s: SignInSetup, code: str, verifier: str) -> dict[str, Any]:
    """The product's back channel: client_secret_basic and the PKCE verifier."""
    response = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, timeout=15,
                          auth=(s.client_id, s.client_secret or ""),
                          data={"grant_type": "authorization_code", "code": code,
                                "redirect_uri": s.product_redirect, "code_verifier": verifier})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def verified_claims(s: SignInSetup, id_token: str, nonce: str) -> dict[str, Any]:
    jwks = httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False, timeout=15)
    assert jwks.status_code == 200, jwks.text
    decoded = jwt.decode(id_token, KeySet.import_key_set(jwks.json()), algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": s.live.url},
                          aud={"essential": True, "value": s.client_id},
                          nonce={"essential": True, "value": nonce}).validate(decoded.claims)
    return dict(decoded.claims)


def test_typed_work_email_signs_in_through_the_organizations_idp(
    setup: SignInSetup, browser_context: BrowserContext
) -> None:
    from playwright.sync_api import expect

    s = setup
    auth = Authorization.for_product(s)
    page = browser_context.new_page()
    delivered = serve_product_callback(page, s)

    # Keyhall: nothing in the request picks the connection, so the hosted page asks for the email.
    page.goto(auth.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    [keyhall_cookie] = login_cookie(browser_context)
    email = page.get_by_role("textbox", name="Work email")
    email.press_sequentially(f"alice@{s.domain}")
    page.get_by_role("button", name="Continue").click()

    # The IdP's login page (devInteractions), reached by home-realm discovery on the typed domain.
    page.wait_for_url(f"{s.idp.base_url}/interaction/**")
    login = page.locator("input[name=login]")
    expect(login).to_have_value(f"alice@{s.domain}")  # Keyhall passed the email on as login_hint
    login.fill("alice")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()

    # The IdP's consent page.
    expect(page.locator("input[name=prompt][value=consent]")).to_be_attached()
    # Both servers live on 127.0.0.1, so the browser holds their cookies in one jar: the IdP's
    # must not have replaced Keyhall's.
    names = [str(c.get("name")) for c in browser_context.cookies()]
    assert "_session" in names or "_interaction" in names, names
    assert login_cookie(browser_context) == [keyhall_cookie], names
    page.get_by_role("button", name="Continue").click()

    # Back through Keyhall's callback to the product.
    page.wait_for_url(s.product_redirect + "**")
    expect(page.get_by_text("Signed in")).to_be_visible()
    assert len(delivered) == 1, delivered
    assert page.url == delivered[0]
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == [auth.state]
    assert query["iss"] == [s.live.url]
    assert login_cookie(browser_context) == []  # the finished sign-in's cookie is gone

    tokens = exchange_code(s, query["code"][0], auth.code_verifier)
    assert tokens["token_type"].lower() == "bearer"
    claims = verified_claims(s, tokens["id_token"], auth.nonce)
    assert claims["email"] == "alice@example.com"  # what the IdP says, not what was typed
    # The IdP vouches for it, but example.com is no domain this organization verified: Keyhall does not.
    assert claims["email_verified"] is False
    assert claims["name"] == "Alice Archer"
    assert claims["org_id"] == s.org["id"]
    assert claims["org_slug"] == s.org["slug"]
    assert claims["connection_id"] == s.connection["id"]
    assert claims["amr"] == ["ext"]


def test_login_page_is_labelled_quiet_and_locked_down(
    setup: SignInSetup, browser_context: BrowserContext, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    s = setup
    page = browser_context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            problems.append(f"console {message.type} at {message.location}: {message.text}")

    def on_page_error(error: Error) -> None:
        problems.append(f"page error: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)

    # The page the authorization request lands on, and the hosted /login page it posts to.
    for url in (Authorization.for_product(s).url, f"{s.live.url}/login"):
        response = page.goto(url)
        assert response is not None
        assert response.status == 200, response.text()
        headers = response.headers
        csp = headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp, headers
        assert "frame-ancestors 'none'" in csp, headers
        assert headers.get("x-frame-options") == "DENY"
        assert headers.get("cache-control") == "no-store"
        expect(page).to_have_title("Sign in · Keyhall")
        email = page.get_by_role("textbox", name="Work email")
        expect(email).to_be_visible()
        expect(email).to_be_editable()
        expect(email).to_have_attribute("type", "email")
        expect(email).to_have_attribute("autocomplete", "username")
        expect(page.locator("form")).to_have_attribute("action", "/login")
        expect(page.get_by_role("button", name="Continue")).to_be_enabled()

    shot = tmp_path / "login.png"
    page.screenshot(path=shot, full_page=True)
    png = shot.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 1000
    assert problems == []


def test_email_no_organization_routes_is_answered_on_the_page(
    setup: SignInSetup, browser_context: BrowserContext
) -> None:
    from playwright.sync_api import expect

    s = setup
    page = browser_context.new_page()
    page.goto(Authorization.for_product(s).url)
    stranger_domain = f"nowhere-{uuid.uuid4().hex[:8]}.test"
    email = page.get_by_role("textbox", name="Work email")
    email.press_sequentially(f"someone@{stranger_domain}")
    email.press("Enter")

    page.wait_for_url(f"{s.live.url}/login")
    expect(page.get_by_role("alert")).to_contain_text(f"No organization signs in people from {stranger_domain}")
    expect(email).to_have_value(f"someone@{stranger_domain}")

    # The same form, corrected, still works: it goes on to the organization's IdP.
    email.fill("")
    email.press_sequentially(f"alice@{s.domain}")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{s.idp.base_url}/interaction/**")
    expect(page.locator("input[name=login]")).to_be_visible()
