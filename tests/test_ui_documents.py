"""The Documents tab in Debian's headless Chromium: real drop events on the drop zone, the progress
bar, the streamed summary, download, delete; bad files get one line and the app keeps serving."""

from __future__ import annotations

import base64

from test_documents import ENGLISH, make_pdf

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
