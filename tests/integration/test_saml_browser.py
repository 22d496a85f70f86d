"""A SAML sign-in in a real browser: headless Chromium (Playwright) types a work email on Keyhall's
login page, is sent by home-realm discovery to the real npm saml-idp with an AuthnRequest, signs in
on saml-idp's form, whose auto-post page submits the Response to Keyhall's ACS; Keyhall's
completion step then sends the browser to the product with a code the product redeems."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.integration.test_saml_signin_e2e import SamlSetup, make_saml_setup
from tests.support.live import LiveKeyhall
from tests.support.saml_idp import SamlIdp

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Request

pytestmark = pytest.mark.peers

PRODUCT_PAGE = "<!doctype html><html lang=en><title>Product</title><p>Signed in</p></html>"


class _Product(BaseHTTPRequestHandler):
    """The product's redirect URI: a page that says the person is signed in, and a record of the URLs."""

    delivered: list[str]

    def do_GET(self) -> None:
        self.delivered.append(self.path)
        body = PRODUCT_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def product() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 at the product's redirect URI (Playwright's routes do not see
    the later hops of a redirect chain, and the product is reached at the end of one)."""
    delivered: list[str] = []
    handler = type("Product", (_Product,), {"delivered": delivered})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/product/callback", delivered
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, saml_idp: SamlIdp, product: tuple[str, list[str]]) -> Iterator[SamlSetup]:
    s = make_saml_setup(live_keyhall, saml_idp, "SamlBrowser", product_redirect=product[0])
    live_keyhall.verify_domain(s.org["id"], s.owner, s.domain)  # so that Keyhall vouches for dana's email
    yield s
    saml_idp.reset()


def test_typed_work_email_signs_in_through_the_organizations_saml_idp(
    setup: SamlSetup, product: tuple[str, list[str]], browser_context: BrowserContext
) -> None:
    from playwright.sync_api import expect

    s = setup
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    authorize = f"{s.live.url}/oauth2/authorize?" + urlencode({
        "response_type": "code", "client_id": s.client_id, "redirect_uri": s.product_redirect,
        "scope": "openid email profile groups", "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    page = browser_context.new_page()
    _product_url, delivered = product
    acs_posts: list[str] = []

    def on_request(request: Request) -> None:
        if request.url == s.acs_url:
            acs_posts.append(request.method)

    page.on("request", on_request)

    # Keyhall: nothing in the request picks the connection, so the hosted page asks for the email.
    page.goto(authorize)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    email = page.get_by_role("textbox", name="Work email")
    email.press_sequentially(f"dana@{s.domain}")
    page.get_by_role("button", name="Continue").click()

    # saml-idp's login page, reached with Keyhall's AuthnRequest (HTTP-Redirect binding).
    page.wait_for_url(s.idp.sso_url + "?**")
    assert {"SAMLRequest", "RelayState"} <= set(parse_qs(urlsplit(page.url).query))
    expect(page.locator("#requestId")).to_have_count(1)
    for field, value in (("#userName", f"dana@{s.domain}"), ("#email", f"dana@{s.domain}"), ("#firstName", "Dana"),
                         ("#lastName", "Dorsey"), ("#displayName", "Dana Dorsey")):
        page.locator(field).fill(value)
    page.locator("#btn-sign-in").click()

    # The IdP's auto-post page submits the Response to Keyhall's ACS; Keyhall's completion step
    # (which needs this browser's login cookie) sends the browser on to the product.
    page.wait_for_url(s.product_redirect + "**")
    expect(page.get_by_text("Signed in")).to_be_visible()
    assert acs_posts == ["POST"]
    assert len(delivered) == 1, delivered
    assert page.url == s.product_redirect.removesuffix("/product/callback") + delivered[0]
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == [state]
    assert query["iss"] == [s.live.url]
    assert [c for c in browser_context.cookies() if c.get("name") == "keyhall_login"] == []

    tokens = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, timeout=15,
                        auth=(s.client_id, s.client_secret),
                        data={"grant_type": "authorization_code", "code": query["code"][0],
                              "redirect_uri": s.product_redirect, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False, timeout=15).json())
    decoded = jwt.decode(tokens.json()["id_token"], keys, algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": s.live.url}, aud={"essential": True, "value": s.client_id},
                          nonce={"essential": True, "value": nonce}).validate(decoded.claims)
    claims = decoded.claims
    assert claims["email"] == f"dana@{s.domain}"
    assert claims["email_verified"] is True
    assert claims["name"] == "Dana Dorsey"
    assert claims["given_name"] == "Dana"
    assert claims["family_name"] == "Dorsey"
    assert claims["org_id"] == s.org["id"]
    assert claims["connection_id"] == s.cid
    assert claims["amr"] == ["ext"]
