"""Dropping a document into the chat box puts it in the conversation (Chromium, real drop)."""

from __future__ import annotations

import base64

from test_documents import ENGLISH, make_pdf
from test_ui_browser import type_and_send
from test_ui_documents import DROP


def drop_on_chat_box(page, name: str, kind: str, data: bytes) -> None:
    """A real drop (DataTransfer + drag events) on the message box; waits for the file's chip."""
    zone = page.locator("#message-box .full-container")
    zone.wait_for(timeout=30_000)
    zone.evaluate(DROP, [[name, kind, base64.b64encode(data).decode()]])
    page.locator("#message-box .thumbnail-item").first.wait_for(timeout=30_000)


def test_drop_a_document_into_the_chat_box_and_ask_about_it(served, page, tmp_path, artifacts):
    demo, url = served
    pdf = make_pdf(tmp_path / "harbour report.pdf", [ENGLISH * 2 + " The harbour master is Ingrid Vos."],
                   title="Harbour report")
    page.goto(url)
    drop_on_chat_box(page, pdf.name, "application/pdf", pdf.read_bytes())
    type_and_send(page, "Who is the harbour master?")
    page.locator("#notice", has_text="The whole of").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('#chatbot .message.bot').length >= 1", timeout=60_000)
    assert "Attached: Harbour report" in page.locator("#chatbot").inner_text()
    page.screenshot(path=str(artifacts / "ui-chat-attached.png"), full_page=True)

    history = demo.nemo.history
    [conversation] = history.conversations()
    rows = history.messages(conversation["id"])
    assert [r["role"] for r in rows][:2] == ["document", "user"]
    prompt = demo.nemo.chat.prompt_messages(conversation["id"], demo.nemo.settings)
    assert "Ingrid Vos" in prompt[0]["content"] and prompt[1]["content"] == "Who is the harbour master?"


def test_a_bad_file_in_the_chat_box_gets_one_line_and_stores_nothing(served, page):
    demo, url = served
    page.goto(url)
    drop_on_chat_box(page, "empty.txt", "text/plain", b"")
    type_and_send(page, "What is in it?")
    page.locator("#notice", has_text="empty.txt").wait_for(timeout=60_000)
    assert demo.nemo.history.conversations() == []
    assert page.locator("#message-box textarea").input_value() == "What is in it?", "the typed question is kept"
