"""A real headless Chromium for the hosted pages, driven by Playwright's sync API.

The browser is Debian's ``chromium`` at ``/usr/bin/chromium`` (``make system-deps`` installs it);
Playwright's own browser download (``playwright install``) is never used. A missing browser or
missing ``playwright`` package goes through ``peer_unavailable``: a failure in CI, a skip on a
developer's machine.

Fixtures:

- ``chromium_browser`` (session): Playwright started once and Chromium launched once, both closed
  at teardown.
- ``browser_context`` (function): a fresh context (its own cookies) per test. Every step is
  bounded by ``STEP_TIMEOUT_MS`` (Playwright's ``expect`` too), and every request that leaves
  127.0.0.1 is refused, so a page that asks the internet for something (the IdP's dev pages
  import a web font) fails fast instead of waiting on a network the tests must not use. (With a
  route installed Chromium does not fetch ``/favicon.ico`` either.)

Note: while the sync API is running, Playwright marks its asyncio loop as the running loop of the
main thread (that is how its greenlets work), so code that calls ``asyncio.run`` in the main
thread cannot share a session with these fixtures.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.support.peers import peer_unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-quic",
)
LAUNCH_TIMEOUT_MS = 30_000  # a cold start takes about a second
STEP_TIMEOUT_MS = 15_000  # one navigation, click or wait
LOCAL_HOSTS = frozenset({"127.0.0.1"})


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Browser]:
    """Headless Debian Chromium under Playwright, launched once for the session."""
    if not CHROMIUM.exists():
        peer_unavailable(f"{CHROMIUM} is missing (Debian package chromium; run `make system-deps`)")
    try:
        sync_api = importlib.import_module("playwright.sync_api")
    except ImportError:
        peer_unavailable("the Python package playwright is not installed (run `make install-test`)")
    playwright = sync_api.sync_playwright().start()
    try:
        try:
            browser: Browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), timeout=LAUNCH_TIMEOUT_MS
            )
        except sync_api.Error as exc:
            peer_unavailable(f"Chromium did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


def _refuse_remote(route: Route) -> None:
    if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
        route.fallback()
    else:
        route.abort("addressunreachable")


@pytest.fixture
def browser_context(chromium_browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context (empty cookie jar) for one test; only 127.0.0.1 is reachable."""
    importlib.import_module("playwright.sync_api").expect.set_options(timeout=STEP_TIMEOUT_MS)
    context = chromium_browser.new_context(locale="en-US", viewport={"width": 1024, "height": 768})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    context.route("**", _refuse_remote)
    try:
        yield context
    finally:
        context.close()
