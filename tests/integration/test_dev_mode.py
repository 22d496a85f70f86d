"""Development mode in a real Chromium: a Keyhall started with ``dev`` (``KEYHALL_DEV=1``) seeds
its demo tenant, and a person opens the example product at ``/_dev/app``, signs in, picks a
sample person at the test IdP (``/_dev/idp/``, by OpenID Connect or SAML) and lands back on the product showing the ID
token's claims, without a request leaving Keyhall's origin. Without development mode, none of
those paths exist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Request, expect

from keyhall.core import application_service
from keyhall.core.connection_service import Context
from keyhall.dev.idp import DevIdp
from keyhall.dev.saml_idp import xmlsec_available
from keyhall.dev.seed import APPLICATION, ORGANIZATION, SEEDER, seed
from tests.support.live import LiveKeyhall, serving_keyhall
from tests.support.peers import peer_unavailable

DEV_PATHS = ("/_dev/app", "/_dev/app/login", "/_dev/app/callback?code=x&state=y",
             "/_dev/idp/.well-known/openid-configuration", "/_dev/idp/jwks", "/_dev/idp/authorize",
             "/_dev/idp/userinfo", "/_dev/idp/saml/metadata", "/_dev/idp/saml/sso?SAMLRequest=x")


@pytest.fixture(scope="module")
def dev_keyhall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKeyhall]:
    with serving_keyhall(Path(tmp_path_factory.mktemp("dev-data")), tmp_path_factory.mktemp("dev-db"),
                         dev=True) as server:
        yield server


def test_a_sign_in_through_the_test_idp_reaches_the_example_product(
    dev_keyhall: LiveKeyhall, browser_context: BrowserContext
) -> None:
    origin = urlsplit(dev_keyhall.url).netloc
    requested: list[str] = []
    problems: list[str] = []

    def on_request(request: Request) -> None:
        requested.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            problems.append(f"console {message.type}: {message.text}")

    def on_page_error(error: Error) -> None:
        problems.append(f"page error: {error}")

    browser_context.on("request", on_request)
    page = browser_context.new_page()
    page.on("console", on_console)
    page.on("pageerror", on_page_error)

    page.goto(f"{dev_keyhall.url}/_dev/app")
    expect(page.get_by_role("heading", name="Example product")).to_be_visible()
    page.get_by_role("link", name="Sign in with OpenID Connect").click()

    # Keyhall routed the organization named in the request to its default connection: the test IdP.
    page.wait_for_url(f"{dev_keyhall.url}/_dev/idp/authorize?**")
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    page.get_by_role("button", name="Sign in as Bob Baker (bob@example.com)").click()

    # Through Keyhall's callback and its code, to the product, which redeemed the code.
    page.wait_for_url(f"{dev_keyhall.url}/_dev/app/callback?**")
    expect(page.locator("#signed-in-email")).to_have_text("bob@example.com")
    expect(page.locator("#signed-in-org")).to_have_text(ORGANIZATION)
    claims = page.locator("#claims")
    expect(claims).to_contain_text('"iss": "' + dev_keyhall.url + '"')
    expect(claims).to_contain_text('"name": "Bob Baker"')
    expect(claims).to_contain_text('"org_slug": "demo"')

    visited = [u for u in requested if urlsplit(u).scheme in ("http", "https")]
    assert any("/sso/" in u and "/oidc/callback" in u for u in visited), visited
    assert [u for u in visited if urlsplit(u).netloc != origin] == []
    assert problems == []


def test_seeding_again_keeps_the_demo_tenant(dev_keyhall: LiveKeyhall) -> None:
    runtime = dev_keyhall.runtime
    idp = DevIdp.for_settings(runtime.settings)
    first, second = seed(runtime, idp), seed(runtime, idp)
    assert first == second
    with runtime.database.unit_of_work(read_only=True) as uow:
        ctx = Context(principal=SEEDER, request_id=None, now=runtime.clock())
        named = [a for a in application_service.list_applications(uow.applications, ctx) if a.name == APPLICATION]
        assert [a.id for a in named] == [first.client_id]
        assert named[0].public
        assert named[0].redirect_uris == [f"{dev_keyhall.url}/_dev/app/callback"]
        org = uow.organizations.get(ORGANIZATION)
        assert org is not None
        assert org.default_connection_id is not None


def test_the_test_idp_publishes_its_discovery_document(dev_keyhall: LiveKeyhall) -> None:
    with dev_keyhall.api() as api:
        found = api.get("/_dev/idp/.well-known/openid-configuration")
        assert found.status_code == 200, found.text
        assert found.json()["issuer"] == f"{dev_keyhall.url}/_dev/idp"
        keys = api.get("/_dev/idp/jwks")
        assert keys.status_code == 200
        assert [k["kty"] for k in keys.json()["keys"]] == ["RSA"]
        assert all("d" not in k for k in keys.json()["keys"])  # no private part
        # The IdP sends people only back to Keyhall: another redirect_uri is refused, not followed.
        refused = api.get("/_dev/idp/authorize", params={
            "response_type": "code", "client_id": "keyhall-demo", "redirect_uri": "https://attacker.example/cb"})
        assert refused.status_code == 400
        assert "Redirect URI https://attacker.example/cb is not supported" in refused.text
        # The SAML side: metadata with the IdP's certificate; a request that is not one is refused on a page.
        metadata = api.get("/_dev/idp/saml/metadata")
        assert metadata.status_code == 200
        assert metadata.headers["content-type"].startswith("application/samlmetadata+xml")
        assert f'entityID="{dev_keyhall.url}/_dev/idp/saml/metadata"' in metadata.text
        assert "X509Certificate" in metadata.text
        assert "PRIVATE KEY" not in metadata.text
        garbage = api.get("/_dev/idp/saml/sso", params={"SAMLRequest": "bm90IHhtbA=="})
        assert garbage.status_code == 400
        assert "SAMLRequest" in garbage.text


def test_outside_development_mode_nothing_answers_under_dev(live_keyhall: LiveKeyhall) -> None:
    with httpx.Client(base_url=live_keyhall.url, trust_env=False, timeout=15) as client:
        for path in DEV_PATHS:
            assert client.get(path).status_code == 404, path
        assert client.post("/_dev/idp/token", data={"grant_type": "authorization_code"}).status_code == 404
        assert client.post("/_dev/idp/authorize", data={"person": "dev-alice"}).status_code == 404
        assert client.post("/_dev/idp/saml/sso", data={"SAMLRequest": "x"}).status_code == 404
        assert client.post("/_dev/idp/saml/login", data={"person": "dev-alice"}).status_code == 404


def test_a_saml_sign_in_through_the_test_idp_reaches_the_example_product(
    dev_keyhall: LiveKeyhall, browser_context: BrowserContext
) -> None:
    if not xmlsec_available():
        peer_unavailable("the xmlsec1 program is missing (Debian package xmlsec1; run `make system-deps`)")
    origin = urlsplit(dev_keyhall.url).netloc
    requested: list[str] = []
    browser_context.on("request", lambda request: requested.append(request.url))
    page = browser_context.new_page()

    page.goto(f"{dev_keyhall.url}/_dev/app")
    page.get_by_role("link", name="Sign in with SAML").click()

    # Keyhall sent an AuthnRequest (HTTP-Redirect) to the test IdP's SAML side.
    page.wait_for_url(f"{dev_keyhall.url}/_dev/idp/saml/sso?**")
    expect(page.get_by_text("Development mode, SAML")).to_be_visible()
    page.get_by_role("button", name="Sign in as Carol Carter (carol@example.com)").click()
    # The signed response, posted on to Keyhall's ACS by the person (the pages run no script).
    page.get_by_role("button", name="Continue to Keyhall").click()

    page.wait_for_url(f"{dev_keyhall.url}/_dev/app/callback?**")
    expect(page.locator("#signed-in-email")).to_have_text("carol@example.com")
    claims = page.locator("#claims")
    expect(claims).to_contain_text('"name": "Carol Carter"')
    expect(claims).to_contain_text('"given_name": "Carol"')
    expect(claims).to_contain_text('"org_slug": "demo"')

    visited = [u for u in requested if urlsplit(u).scheme in ("http", "https")]
    assert any(u.endswith("/saml/acs") for u in visited), visited
    assert [u for u in visited if urlsplit(u).netloc != origin] == []
