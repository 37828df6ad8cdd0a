"""Each tab of the served app checked by axe-core (axe-playwright-python) in Chromium, in English
and in Arabic (right to left): no serious or critical violations."""

from __future__ import annotations

import json

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS

TABS = {  # in page order, with an element that shows the tab has rendered
    "chat": "#message-box", "documents": "#doc-drop", "translate": "#translate-text", "settings": "#model-name"}
BROWSER_LOCALES = {"en": "en-US", "ar": "ar-EG"}
BLOCKING = ("serious", "critical")


def blocking_violations(results: dict, tab: str) -> list[str]:
    """One line per serious or critical violation: tab, rule, impact, the elements, the fix."""
    return [f"{tab}: {v['id']} ({v['impact']}) on {', '.join(str(n['target']) for n in v['nodes'])}: {v['help']}"
            for v in results["violations"] if v["impact"] in BLOCKING]


def open_every_accordion(page) -> None:
    """Axe checks only what is shown: open the closed accordions of the page as it is now."""
    closed = page.locator(".label-wrap:not(.open):visible")
    for _ in range(closed.count()):
        closed.first.click()
        page.wait_for_timeout(200)


@pytest.mark.parametrize("code", list(BROWSER_LOCALES))
def test_no_serious_or_critical_axe_violations_on_any_tab(code, served, artifacts):
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    _, url = served
    axe, found, reports = Axe(), [], {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(locale=BROWSER_LOCALES[code], viewport={"width": 1280, "height": 800})
        page.goto(url)
        page.wait_for_selector(TABS["chat"])
        page.wait_for_function("lang => document.documentElement.lang.startsWith(lang)", arg=code)
        for n, (tab, ready) in enumerate(TABS.items()):
            page.get_by_role("tab").nth(n).click()
            page.wait_for_selector(ready)
            open_every_accordion(page)
            reports[tab] = axe.run(page).response
            found += blocking_violations(reports[tab], tab)
        browser.close()
    (artifacts / f"axe-{code}.json").write_text(json.dumps(reports, indent=1, ensure_ascii=False), encoding="utf-8")
    assert found == [], "axe-core:\n" + "\n".join(found)
