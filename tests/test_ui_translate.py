"""The Translate tab in headless Chromium: a real drop of a Markdown document, translated side by side."""

from __future__ import annotations

import base64
import os
import re
import time
from dataclasses import replace
from pathlib import Path

from app.storage.document_store import DocumentStore

from test_ui_documents import DROP, follow_progress

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


LINK_RE = r"\[[^\]\n]+\]\({}\)"


def calls_shown(seen: list[tuple[float, str]]) -> list[tuple[int, int]]:
    """The (call, of calls) each status line showed, in order."""
    return [(int(m.group(1)), int(m.group(2))) for _, line in seen if (m := re.search(r"call (\d+) of (\d+)", line))]


def download_name(page) -> str:
    """The name the page shows for the download (Gradio shows the extension apart), checked against
    the name the browser saves it as."""
    link = page.locator("#translate-download a").first
    link.wait_for(timeout=30_000)
    cell = page.locator("#translate-download td.filename").first
    shown = "".join(cell.locator("span").all_inner_texts())
    assert shown == cell.get_attribute("aria-label") == link.get_attribute("download"), shown
    return shown


def test_drop_a_document_translate_it_side_by_side_and_download(served, page, artifacts):
    """Four lines in one part; cut at 8 tokens, the numbered reply is asked again line by line: the
    status counts those 5 calls, not "part 1 of 1" alone. The link stays a link, and the download
    is named after the source and the language (never the source's own name)."""
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, temperature=0, max_tokens=8)  # short replies: fast
    page.goto(url)
    page.get_by_role("tab", name="Translate").click()
    zone = page.locator("#translate-file .upload-container")
    zone.wait_for(timeout=30_000)
    zone.evaluate(DROP, [["release notes.md", "text/markdown", base64.b64encode(NOTES).decode()]])
    page.locator("#translate-detected", has_text="detected: English").wait_for(timeout=30_000)

    page.locator("#translate-start").click()
    seen = follow_progress(page, "#translate-status", "English → French in ",
                           ("call 3 of 5", str(artifacts / "ui-translate-calls.png")), timeout_s=180)
    shown = calls_shown(seen)
    assert shown and shown == sorted(shown) and all(call <= of for call, of in shown), seen
    assert shown[-1] == (5, 5) and all("part 1 of 1" in line for _, line in seen if "call " in line), seen
    assert re.match(r"(✅|⚠️) Translated English → French in 1 part\.", seen[-1][1]), seen[-1]
    rows = page.locator("#translation-table tr")
    assert rows.count() >= 2, "a header and one row per segment"
    sources = page.locator("#translation-table td:nth-child(1)").all_inner_texts()
    targets = page.locator("#translation-table td:nth-child(2)").all_inner_texts()
    assert "".join(sources).strip() == NOTES.decode().strip(), "the rows join to the whole document"
    joined = "".join(targets)
    for kept in ["```sh\nmake check && git push\n```", "`make check`"]:
        assert kept in joined, kept
    assert len(re.findall(LINK_RE.format(re.escape("https://example.com/guide")), joined)) == 1, joined
    assert download_name(page) == "release notes.fr.md"
    page.screenshot(path=str(artifacts / "ui-translate.png"), full_page=True)

    uploads = [p for p in tmp_folder().rglob("release notes.md") if not p.parent.name.startswith("download-")]
    assert uploads == [], "the dropped file is deleted once it is read into the database"
    downloads = [p for p in tmp_folder().rglob("*.md") if p.parent.name.startswith("download-")]
    assert [p.name for p in downloads] == ["release notes.fr.md"] and downloads[0].read_text(encoding="utf-8").strip()
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


def type_english(served, page, text: str, max_tokens: int):
    """Short replies at temperature 0; the Translate tab opened, `text` typed and detected as English."""
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, temperature=0, max_tokens=max_tokens)
    page.goto(url)
    page.get_by_role("tab", name="Translate").click()
    page.locator("#translate-text textarea").click()
    page.keyboard.type(text)
    page.locator("#translate-detected", has_text="Detected: English").wait_for(timeout=30_000)
    return demo


def test_typed_text_shows_its_progress_and_a_reply_in_english_is_a_warning(served, page, artifacts):
    """Typed like a person; SmolLM2 echoes English when asked for French: the result is a warning,
    not a success, and its notes speak plainly."""
    demo = type_english(served, page, "The lighthouse keeper waited by the grey sea for the morning light.", 16)
    page.screenshot(path=str(artifacts / "ui-translate-idle.png"), full_page=True)
    demo.nemo.ensure_model()

    page.locator("#translate-start").click()
    seen = follow_progress(page, "#translate-status", "English → French in 1 part.",
                           ("now writing: ", str(artifacts / "ui-translate-progress.png")))
    steps = [text for _, text in seen if "now reading the prompt: " in text or "now writing: " in text]
    assert steps and "now writing: " not in steps[0], f"the prompt's reading shows before the writing: {seen}"
    assert any("now writing: " in text for text in steps), seen
    status = page.locator("#translate-status", has_text="English → French in 1 part.")
    status.wait_for(timeout=120_000)
    text = status.inner_text()
    assert text.startswith("⚠️ Translated English → French in 1 part.") and "✅" not in text, text
    assert "⚠️ The translation reads as English, not French" in text
    assert "1 reply was cut short at 16 tokens (the “Max reply tokens” setting): the end of part 1 may be missing." in text
    assert "segment" not in text and "×" not in text
    page.screenshot(path=str(artifacts / "ui-translate-warning.png"), full_page=True)


def test_a_typed_link_comes_back_a_link_and_downloads_as_translation_fr_md(served, page, artifacts):
    """The link's text goes to the model between two markers; whatever SmolLM2 does with them, the
    translation shows one Markdown link to the same address, and no bare "(https://…)"."""
    type_english(served, page, "Read [the manual](https://example.com/manual) before you start the engine.", 40)
    page.locator("#translate-start").click()
    page.locator("#translate-status", has_text="Translated English → French in 1 part.").wait_for(timeout=120_000)
    [translated] = page.locator("#translation-table td:nth-child(2)").all_inner_texts()
    assert len(re.findall(LINK_RE.format(re.escape("https://example.com/manual")), translated)) == 1, translated
    assert "(https://example.com/manual)" not in re.sub(LINK_RE.format(re.escape("https://example.com/manual")), "",
                                                         translated), "no bare (url) beside the link"
    assert download_name(page) == "translation.fr.md"
    page.screenshot(path=str(artifacts / "ui-translate-link.png"), full_page=True)
    [download] = [p for p in tmp_folder().rglob("translation.fr.md") if p.parent.name.startswith("download-")]
    assert download.read_text(encoding="utf-8").strip() == translated.strip()


def test_on_two_sequences_two_parts_are_written_at_once_and_land_in_their_rows(served, page, artifacts):
    """In Settings, a small context and 2 sequences at once; the plan then says what 2 cost. The
    typed text is cut into four parts, translated in two lanes; the table shows two parts being
    written at the same time, then every row translated, in order."""
    demo, url = served
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    for label, value in (("Context size (tokens)", "512"), ("Max reply tokens", "24")):
        page.get_by_label(label).click()
        page.keyboard.press("Control+A")
        page.keyboard.type(value)
    page.locator("#save-settings").click()
    page.locator("#settings-status", has_text="Saved").wait_for(timeout=60_000)
    page.get_by_text("Engine: on this machine or a server").click()
    page.locator("#engine-parallel input").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    page.locator("#engine-use").click()
    page.locator("#engine-status", has_text="Saved").wait_for(timeout=60_000)
    assert (demo.nemo.engine.parallel, demo.nemo.engine.n_ctx) == (2, 512)
    page.reload()
    page.get_by_role("tab", name="Settings").click()
    page.locator("#gpu-plan", has_text="2 sequences at once").wait_for(timeout=30_000)
    assert page.get_by_label("Context size (tokens)").input_value() == "512", "the fields show the settings in use"
    page.get_by_text("Engine: on this machine or a server").click()
    assert page.locator("#engine-parallel input").input_value() == "2"
    page.screenshot(path=str(artifacts / "ui-settings-two-sequences.png"), full_page=True)

    subjects = ["The lighthouse keeper", "The old fisherman", "The harbour master", "The baker"]
    paragraphs = [f"{who} waited by the grey sea for the morning light, counting the boats that came home "
                  "one by one through the fog, and wrote their names in a small blue book." for who in subjects]
    page.get_by_role("tab", name="Translate").click()
    page.locator("#translate-text textarea").click()
    page.keyboard.type("\n\n".join(paragraphs))
    page.locator("#translate-detected", has_text="Detected: English").wait_for(timeout=30_000)
    page.locator("#translate-start").click()

    writing = page.locator("#translation-table span.writing")
    deadline = time.monotonic() + 120
    while sum(text.strip("…") != "" for text in writing.all_inner_texts()) < 2:
        assert time.monotonic() < deadline, "two parts were never written at once"
        page.wait_for_timeout(20)
    assert "2 parts at once" in page.locator("#translate-status").inner_text()
    page.screenshot(path=str(artifacts / "ui-translate-two-lanes.png"), full_page=True)
    page.locator("#translate-status", has_text="English → French in 4 parts.").wait_for(timeout=180_000)
    sources = page.locator("#translation-table td:nth-child(1)").all_inner_texts()
    targets = page.locator("#translation-table td:nth-child(2)").all_inner_texts()
    assert [s.strip() for s in sources] == paragraphs and all(t.strip() and t.strip() != "…" for t in targets)
    assert writing.count() == 0
