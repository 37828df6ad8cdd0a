"""The Documents tab in Debian's headless Chromium: real drop events on the drop zone, the progress
bar, the streamed summary, Stop and Summarize again going on from the stopped call's tokens,
download, delete; bad files get one line and the app keeps serving."""

from __future__ import annotations

import base64
import re
import time
from dataclasses import replace

import pytest

from app.services.engine_calls import PARTIAL

from test_documents import ENGLISH, make_pdf
from corpora import long_markdown

DROP = """(zone, files) => {
    const transfer = new DataTransfer();
    for (const [name, type, b64] of files) {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        transfer.items.add(new File([bytes], name, {type}));
    }
    for (const kind of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(kind, {bubbles: true, cancelable: true, dataTransfer: transfer}));
    }
}"""


def drop_files(page, files: list[tuple[str, str, bytes]]) -> None:
    """Drop files on the Documents drop zone the way a browser does: a DataTransfer with File objects."""
    zone = page.locator("#doc-drop .upload-container")
    zone.wait_for(timeout=30_000)
    payload = [[name, kind, base64.b64encode(data).decode()] for name, kind, data in files]
    zone.evaluate(DROP, payload)


def test_drop_a_pdf_summarize_it_and_keep_serving(served, page, artifacts, tmp_path):
    demo, url = served
    store_documents = lambda: demo.nemo.history.db.execute("SELECT file_name FROM documents").fetchall()  # noqa: E731
    pdf = make_pdf(tmp_path / "council minutes.pdf", [ENGLISH * 8, ENGLISH * 6 + "The meeting ended at nine."],
                   title="Council minutes")
    page.goto(url)
    page.get_by_role("tab", name="Documents").click()

    drop_files(page, [("notes.txt", "text/plain", bytes(range(256)) * 8)])
    page.locator("#doc-status", has_text="notes.txt: not a text file (binary data)").wait_for(timeout=30_000)
    assert store_documents() == [], "a bad file stores nothing"

    drop_files(page, [(pdf.name, "application/pdf", pdf.read_bytes())])
    page.locator("#doc-status", has_text="council minutes.pdf: 2 pages").wait_for(timeout=30_000)
    row = page.locator("#doc-table", has_text="council minutes.pdf")
    assert "English" in row.inner_text() and "fits in one pass" in row.inner_text()
    assert store_documents() == [("council minutes.pdf",)]

    page.locator("#doc-choice input").click()
    page.get_by_role("option", name="council minutes.pdf", exact=False).click()
    page.locator("#doc-length label", has_text="short").click()
    page.locator("#summarize").click()
    page.locator("#doc-progress progress").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('#doc-progress').innerText.includes('done')",
                           timeout=240_000)
    summary = page.locator("#doc-summary").inner_text().strip()
    assert summary, "the summary is shown"
    [kept] = demo.nemo.history.db.execute("SELECT text FROM summaries").fetchall()
    assert kept[0].split()[0] in summary
    with page.expect_download() as download:
        page.locator("#doc-download").click()
    assert download.value.suggested_filename.endswith(".md")
    page.screenshot(path=str(artifacts / "ui-documents-summary.png"), full_page=True)

    page.locator("#doc-delete").click()
    page.wait_for_function("() => !document.querySelector('#doc-table').innerText.includes('council minutes.pdf')",
                           timeout=30_000)
    assert store_documents() == []


def test_the_page_limit_set_in_settings_refuses_a_longer_pdf_in_one_line(served, page, tmp_path):
    demo, url = served
    pdf = make_pdf(tmp_path / "two pages.pdf", [ENGLISH, ENGLISH], title="Two pages")
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    page.get_by_text("Documents: limits for reading a file").click()
    field = page.locator("#parse-pages input")
    field.fill("1")
    page.locator("#save-settings").click()
    page.locator("#settings-status", has_text="Saved").wait_for(timeout=60_000)
    assert demo.nemo.settings.parse_max_pages == 1

    page.get_by_role("tab", name="Documents").click()
    drop_files(page, [(pdf.name, "application/pdf", pdf.read_bytes())])
    status = page.locator("#doc-status", has_text="two pages.pdf")
    status.wait_for(timeout=60_000)
    assert "2 pages is over the 1-page limit" in status.inner_text()
    assert demo.nemo.documents.documents() == [], "a refused file stores nothing"


TEXT_END_AND_ARROW = """input => {
    const box = input.getBoundingClientRect(), style = getComputedStyle(input);
    const arrow = input.parentElement.querySelector('.icon-wrap').getBoundingClientRect();
    return [box.right - parseFloat(style.paddingRight), arrow.left, input.scrollWidth <= input.clientWidth];
}"""


def follow_progress(page, where: str, until: str, snapshot: tuple[str, str] | None = None,
                    timeout_s: float = 120) -> list[tuple[float, str]]:
    """The text of `where` each time it changes, (seconds since the call, text), until it contains
    `until`; `snapshot` (part, path): a screenshot when the text first contains `part`."""
    seen, started = [], time.monotonic()
    while time.monotonic() - started < timeout_s:
        text = page.locator(where).inner_text().strip()
        if not seen or seen[-1][1] != text:
            seen.append((round(time.monotonic() - started, 2), text))
            if snapshot and snapshot[0] in text:
                page.screenshot(path=snapshot[1], full_page=True)
                snapshot = None
        if until in text:
            return seen
        page.wait_for_timeout(40)
    raise AssertionError(f"{where} never showed {until!r}: {seen}")


def test_a_dropped_document_is_selected_and_its_summary_shows_the_prompt_read_then_written(served, page, artifacts,
                                                                                          tmp_path):
    """A document four times the (small) context: dropped, it is the chosen one, so Summarize works at
    once; the line first shows the first call's prompt being read, token by token, then written."""
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, n_ctx=1024, temperature=0)
    chronicle = long_markdown(2_000).encode()
    page.goto(url)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#doc-language input").wait_for(timeout=30_000)
    text_end, arrow_start, whole = page.locator("#doc-language input").evaluate(TEXT_END_AND_ARROW)
    assert text_end <= arrow_start and whole, "the summary language is shown whole, before the dropdown's arrow"
    page.screenshot(path=str(artifacts / "ui-documents-idle.png"), full_page=True)
    drop_files(page, [("chronicle.md", "text/markdown", chronicle)])
    page.locator("#doc-status", has_text="chronicle.md").wait_for(timeout=30_000)
    assert "chronicle.md" in page.locator("#doc-choice input").input_value(), "the dropped document is chosen"
    demo.nemo.ensure_model()  # the small context is loaded before the clock starts

    page.locator("#summarize").click()
    seen = follow_progress(page, "#doc-progress", "now writing: ",
                           ("now writing: ", str(artifacts / "ui-documents-progress.png")))
    reading = [(at, text) for at, text in seen if "now reading the prompt" in text]
    first_call = next(text for _, text in seen if " · now " in text or text.startswith("now "))
    assert "now reading the prompt" in first_call, f"the first call shows its prompt being read first: {seen}"
    assert "reading the document · step 1 of " in reading[0][1], reading
    assert len({text for _, text in reading}) >= 2, f"the document's tokens count up: {seen}"
    tokens = f"{demo.nemo.documents.documents()[0]['tokens']:,}"
    counted = [text for _, text in seen if "tokens of the document" in text]
    assert counted and all(f" / {tokens} tokens of the document (Tekken)" in text for text in counted), \
        "one count for the document: the table's"
    assert f"{tokens}" in page.locator("#doc-table").inner_text() and "Tokens (Tekken)" in page.locator("#doc-table").inner_text()
    page.locator("#doc-stop").click()
    page.locator("#doc-progress", has_text="Summarize again to go on from here").wait_for(timeout=60_000)


def test_a_summary_in_the_wrong_language_warns_and_a_delete_can_be_undone(served, page, artifacts, tmp_path):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, temperature=0)
    pdf = make_pdf(tmp_path / "council news.pdf", [ENGLISH * 2], title="Council news")
    page.goto(url)
    page.get_by_role("tab", name="Documents").click()
    drop_files(page, [(pdf.name, "application/pdf", pdf.read_bytes())])
    page.locator("#doc-status", has_text="council news.pdf: 1 page ·").wait_for(timeout=30_000)
    page.locator("#doc-language input").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("French")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert page.locator("#doc-language input").input_value() == "French"
    page.locator("#doc-length label", has_text="short").click()
    page.locator("#summarize").click()
    warning = page.locator("#doc-progress .doc-warning")
    warning.wait_for(timeout=120_000)
    assert warning.inner_text().startswith("⚠️ The summary reads as English, not French"), warning.inner_text()
    page.screenshot(path=str(artifacts / "ui-documents-warning.png"), full_page=True)
    summary = page.locator("#doc-summary").inner_text().strip()
    assert summary

    page.locator("#doc-delete").click()
    page.locator("#doc-status", has_text="Deleted council news.pdf").wait_for(timeout=30_000)
    assert demo.nemo.documents.documents() == [] and page.locator("#doc-summary").inner_text().strip() == ""
    assert "council news.pdf" not in page.locator("#doc-table").inner_text()
    page.screenshot(path=str(artifacts / "ui-documents-deleted.png"), full_page=True)
    page.locator("#doc-undo").click()
    page.locator("#doc-status", has_text="council news.pdf is back").wait_for(timeout=30_000)
    [document] = demo.nemo.documents.documents()
    assert document["file_name"] == "council news.pdf" and demo.nemo.documents.summaries(document["id"])
    assert "council news.pdf" in page.locator("#doc-table").inner_text()
    assert "council news.pdf" in page.locator("#doc-choice input").input_value(), "chosen again"
    page.locator("#doc-summary", has_text=summary[:40]).wait_for(timeout=30_000)
    assert not page.locator("#doc-undo").is_visible()


def focused(page) -> str:
    return page.evaluate("() => document.activeElement && document.activeElement.id")


GOING_ON = re.compile(r"now writing: ([\d,]+) tokens \(at most [\d,]+\), going on from the ([\d,]+) written before the Stop")


@pytest.mark.timeout(900)
def test_stop_while_a_summary_writes_then_summarize_again_goes_on_and_completes(served, page, artifacts):
    """Keyboard only: drop a document twice the (small) context, Summarize (Enter), Stop (Tab,
    Enter) while a call writes, Summarize again (Shift+Tab, Enter): the line says the stopped call
    goes on from the tokens it wrote and counts on from them, and the summary comes out whole."""
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, n_ctx=1024, temperature=0)
    db = demo.nemo.history.db
    partials = lambda: db.execute("SELECT count(*) FROM cached_results WHERE key LIKE ?",  # noqa: E731
                                  [f"%{PARTIAL}"]).fetchone()[0]
    page.goto(url)
    page.get_by_role("tab", name="Documents").focus()
    page.keyboard.press("Enter")
    drop_files(page, [("chronicle.md", "text/markdown", long_markdown(1_200).encode())])
    page.locator("#doc-status", has_text="chronicle.md").wait_for(timeout=30_000)
    demo.nemo.ensure_model()

    page.locator("#summarize").focus()
    page.keyboard.press("Enter")
    follow_progress(page, "#doc-progress", "now writing: ", timeout_s=300)
    page.keyboard.press("Tab")
    assert focused(page) == "doc-stop"
    page.keyboard.press("Enter")
    page.locator("#doc-progress", has_text="Summarize again to go on from here").wait_for(timeout=60_000)
    assert partials() == 1, "the call stopped while writing kept its tokens"
    assert db.execute("SELECT count(*) FROM summaries").fetchone()[0] == 0

    page.keyboard.press("Shift+Tab")
    assert focused(page) == "summarize"
    page.keyboard.press("Enter")
    seen = follow_progress(page, "#doc-progress", "done", ("going on from the", str(artifacts / "ui-documents-resume.png")),
                           timeout_s=600)
    going_on = [(text, GOING_ON.search(text)) for _, text in seen if "going on from the" in text]
    assert going_on and all(found for _, found in going_on), going_on
    counts = [(int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) for _, m in going_on]
    assert all(count > kept for count, kept in counts), "the line counts the writing on from the kept tokens"
    assert len({kept for _, kept in counts}) == 1, "one stopped call goes on"
    tokens = f"{demo.nemo.documents.documents()[0]['tokens']:,}"
    assert all(f" / {tokens} tokens of the document (Tekken)" in text for text, _ in going_on)
    summary = page.locator("#doc-summary").inner_text().strip()
    [(stored,)] = db.execute("SELECT text FROM summaries").fetchall()
    assert summary and re.findall(r"\w+", summary) == re.findall(r"\w+", stored), "the whole summary is shown"
    assert partials() == 0, "the stopped call finished: its kept tokens are gone"
    page.screenshot(path=str(artifacts / "ui-documents-resumed-done.png"), full_page=True)
