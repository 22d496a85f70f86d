"""axe-core, in the page, for the accessibility of Keyhall's pages (WCAG 2.1 AA).

``assert_accessible(page)`` runs ``axe_playwright_python``'s copy of axe-core inside the page
Playwright has open and fails with every serious or critical violation: its rule id, what it asks
for, and the CSS targets of the nodes that break it. The script is the package's own file,
evaluated through the DevTools protocol: nothing is fetched, so nothing leaves the page's origin
(and the pages' CSP, which allows no script, does not apply to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

BLOCKING_IMPACTS = frozenset({"serious", "critical"})
# The rules of WCAG 2.0 and 2.1, levels A and AA, and axe's best practices (landmarks, one h1, ...).
AXE_OPTIONS: dict[str, Any] = {
    "resultTypes": ["violations"],
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
}


def _describe(violation: dict[str, Any]) -> str:
    targets = [" ".join(str(t) for t in node.get("target", [])) for node in violation.get("nodes", [])]
    return f"{violation['id']} ({violation.get('impact')}): {violation.get('help')} — nodes: {targets}"


def assert_accessible(page: Page) -> None:
    """Fail listing every serious or critical axe-core violation on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe  # test-only package; kept out of import time

    results = Axe().run(page, options=AXE_OPTIONS)
    blocking = [v for v in results.response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    assert not blocking, f"{page.url} ({page.title()!r}) is not accessible:\n" + "\n".join(
        _describe(v) for v in blocking)
