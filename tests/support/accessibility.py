"""axe-core (``axe-playwright-python``) on a page open in Playwright: no serious or critical
violations of the WCAG rules axe checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from playwright.sync_api import Page

BLOCKING = frozenset({"serious", "critical"})


def assert_accessible(page: Page) -> None:
    results = Axe().run(page)
    violations: list[dict[str, Any]] = results.response.get("violations", [])
    blocking = [v for v in violations if v.get("impact") in BLOCKING]
    summary = [f"{v['id']} ({v['impact']}): {v.get('help')} at "
               f"{[n.get('target') for n in v.get('nodes', [])][:3]}" for v in blocking]
    assert not blocking, f"{page.url}: " + "; ".join(summary)
