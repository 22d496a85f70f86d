"""``/docs`` in a real Chromium: Swagger UI renders Keyhall's operations from files Keyhall serves
itself, nothing is requested from another origin, and its Content-Security-Policy refuses nothing
the page needs (no violation reported)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Request, expect

from tests.support.live import LiveKeyhall


def test_docs_render_offline_from_keyhalls_own_origin(live_keyhall: LiveKeyhall,
                                                      browser_context: BrowserContext) -> None:
    origin = urlsplit(live_keyhall.url)
    requested: list[str] = []
    problems: list[str] = []

    def on_request(request: Request) -> None:
        requested.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    def on_page_error(error: Error) -> None:
        problems.append(str(error))

    browser_context.on("request", on_request)
    page = browser_context.new_page()
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.goto(f"{live_keyhall.url}/docs")

    # The operations are on the page, read from /openapi.json: a native one, an /oauth2 one.
    expect(page.locator(".opblock-summary-path", has_text="/v1/organizations/{org}/connections").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/oauth2/token").first).to_be_visible()
    assert page.locator(".opblock").count() > 40
    expect(page.locator("button.authorize")).to_be_visible()  # the bearer scheme is offered

    assert requested, "the page made no requests"
    foreign = [url for url in requested
               if urlsplit(url).scheme not in ("data", "blob") and
               (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)]
    assert foreign == []
    assert f"{live_keyhall.url}/openapi.json" in requested
    assert f"{live_keyhall.url}/docs/assets/swagger-ui-bundle.js" in requested
    assert problems == []
