"""The Translate tab in headless Chromium: a real drop of a Markdown document, translated side by side."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import replace
from pathlib import Path

from app.storage.document_store import DocumentStore

from test_ui_documents import DROP

NOTES = b"""# Release notes

Run `make check` before you push, and read [the guide](https://example.com/guide).

```sh
make check && git push
```

- Faster start-up
- Smaller downloads
"""


def tmp_folder() -> Path:
    return Path(os.environ["GRADIO_TEMP_DIR"])


def test_drop_a_document_translate_it_side_by_side_and_download(served, page, artifacts):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, temperature=0, max_tokens=8)  # short replies: fast
    page.goto(url)
    page.get_by_role("tab", name="Translate").click()
    zone = page.locator("#translate-file .upload-container")
    zone.wait_for(timeout=30_000)
    zone.evaluate(DROP, [["release notes.md", "text/markdown", base64.b64encode(NOTES).decode()]])
    page.locator("#translate-detected", has_text="detected: English").wait_for(timeout=30_000)

    page.locator("#translate-start").click()
    page.locator("#translate-status", has_text="Translated").wait_for(timeout=180_000)
    rows = page.locator("#translation-table tr")
    assert rows.count() >= 2, "a header and one row per segment"
    sources = page.locator("#translation-table td:nth-child(1)").all_inner_texts()
    targets = page.locator("#translation-table td:nth-child(2)").all_inner_texts()
    assert "".join(sources).strip() == NOTES.decode().strip(), "the rows join to the whole document"
    joined = "".join(targets)
    for kept in ["```sh\nmake check && git push\n```", "`make check`", "(https://example.com/guide)"]:
        assert kept in joined, kept
    page.locator("#translate-download a").first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "ui-translate.png"), full_page=True)

    uploads = [p for p in tmp_folder().rglob("release notes.md") if not p.parent.name.startswith("download-")]
    assert uploads == [], "the dropped file is deleted once it is read into the database"
    downloads = [p for p in tmp_folder().rglob("*.md") if p.parent.name.startswith("download-")]
    assert len(downloads) == 1 and downloads[0].read_text(encoding="utf-8").strip()
    page.close()  # the browser tab goes away: the file made for it goes too
    deadline = time.monotonic() + 60
    while downloads[0].exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not downloads[0].exists()

    store = DocumentStore(demo.nemo.history)
    [saved] = store.translations()
    row = store.translation(saved["id"])
    assert saved["document_id"] is not None and saved["status"] == "complete"
    assert row["source"] == NOTES.decode().strip() and "make check && git push" in row["text"]
