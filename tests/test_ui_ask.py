"""Questions in the Documents tab and the fold of a long conversation, in headless Chromium with
the keyboard (real SmolLM2, real SQLite): drop two files, choose both, ask, see sources with their
pages, open one and see the quote marked; a 30-turn conversation at a 1,024-token context shows
"Earlier messages summarized (N messages)", whose box holds the summary. Not proven: that the box,
opened with Enter while the reply streams, shows the summary (the screenshot shows it open, empty)."""

from __future__ import annotations

import time

import pytest

from app.base.config import Settings, save_settings
from app.services.citations import normalized
from conftest import free_port
from test_documents import make_pdf
from test_retrieval import PLANTED, QUESTION, filler_pages
from test_ui_documents import drop_files

PLANTED_PAGE = 4


@pytest.fixture()
def served_small(home):
    """The app with SmolLM2 at a 1,024-token context and short replies."""
    from app.ui import build_app, launch

    save_settings(Settings(model="smollm2", n_ctx=1024, max_tokens=48, temperature=0.0, tools=""))
    demo, style = build_app()
    port = free_port()
    launch(demo, style, port=port, block=False)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


def press_on(page, locator, key: str = "Space") -> None:
    """Give a control the keyboard focus, then press a key on it (no click)."""
    locator.focus()
    page.keyboard.press(key)


def test_drop_two_files_choose_both_ask_and_open_a_source_with_the_quote_marked(served_small, page, artifacts,
                                                                                   tmp_path):
    demo, url = served_small
    pages = filler_pages(6, seed=11)
    pages[PLANTED_PAGE - 1] += " " + PLANTED
    ledger = make_pdf(tmp_path / "ledger.pdf", pages, title="Harbour ledger")
    other = make_pdf(tmp_path / "mill.pdf", filler_pages(3, seed=12), title="Mill accounts")
    page.goto(url)
    page.get_by_role("tab", name="Documents").click()
    drop_files(page, [(ledger.name, "application/pdf", ledger.read_bytes()),
                      (other.name, "application/pdf", other.read_bytes())])
    page.locator("#doc-status", has_text="mill.pdf: 3 pages").wait_for(timeout=60_000)
    for name in ("ledger.pdf", "mill.pdf"):
        box = page.locator("#ask-docs label", has_text=name).locator("input")
        press_on(page, box)
        assert box.is_checked(), name
    page.locator("#ask-question textarea").focus()
    page.keyboard.type(QUESTION)
    page.keyboard.press("Enter")
    page.locator("#ask-progress", has_text="done").wait_for(timeout=240_000)
    sources = page.locator("#ask-sources label")
    assert sources.count() >= 1
    labels = [sources.nth(i).inner_text() for i in range(sources.count())]
    assert any(f"ledger.pdf, p. {PLANTED_PAGE}" in label for label in labels), labels
    assert page.locator("#ask-answer").inner_text().strip(), "the answer is shown"
    page.screenshot(path=str(artifacts / "ui-documents-ask.png"), full_page=True)

    planted = next(i for i, label in enumerate(labels) if f"p. {PLANTED_PAGE}" in label)
    press_on(page, sources.nth(planted).locator("input"))
    mark = page.locator("#ask-passage mark")
    mark.wait_for(timeout=30_000)
    passage = page.locator("#ask-passage").inner_text()
    assert f"ledger.pdf, p. {PLANTED_PAGE}" in passage and normalized(mark.inner_text()) in normalized(passage)
    assert "obsidian astrolabe" in mark.inner_text()
    page.locator("#ask-passage").screenshot(path=str(artifacts / "ui-documents-ask-passage.png"))

    press_on(page, page.locator("#ask-chat"), "Enter")
    page.locator("#ask-note", has_text="Saved as the conversation").wait_for(timeout=30_000)
    [(first, second)] = demo.nemo.history.db.execute(
        "SELECT (SELECT content FROM messages WHERE role = 'user'), (SELECT content FROM messages WHERE role ="
        " 'assistant')").fetchall()
    assert first == QUESTION and f"p. {PLANTED_PAGE}" in second, "the answer continues as a chat, sources kept"


@pytest.mark.timeout(1500)
def test_a_30_turn_conversation_at_a_1024_context_shows_the_fold(served_small, page, artifacts):
    demo, url = served_small
    history = demo.nemo.history
    conversation_id = history.create_conversation("Thirty turns")
    for turn in range(1, 30):
        history.add_message(conversation_id, "user", f"Turn {turn}: " + "Tell me about the harbour. " * 12)
        history.add_message(conversation_id, "assistant", f"Reply {turn}: " + "The harbour is busy. " * 12)
    page.goto(url)
    page.locator("#conversation-list label", has_text="Thirty turns").click()
    page.locator("#chatbot .message.bot", has_text="Reply 29:").wait_for(timeout=30_000)
    page.locator("#message-box textarea").focus()
    page.keyboard.type("Turn 30: what did we talk about?")
    page.keyboard.press("Enter")
    fold = page.locator("#chatbot", has_text="Earlier messages summarized (")
    fold.wait_for(timeout=1_200_000)  # several summary calls on a busy machine
    [row] = demo.nemo.chat.summaries.of(conversation_id)[-1:]
    title = page.get_by_text(f"Earlier messages summarized ({row['messages']} messages)")
    title.wait_for(timeout=10_000)
    assert row["messages"] >= 20, "most of the 58 earlier messages are folded"
    title.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ui-chat-fold.png"), full_page=True)
    opener = page.locator("#chatbot [role=button].title", has_text="Earlier messages summarized (").first
    press_on(page, opener, "Enter")
    summary_start = " ".join(row["text"].split()[:4])
    page.locator("#chatbot .thought-group", has_text=summary_start).first.wait_for(timeout=10_000)  # the box holds it
    title.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ui-chat-fold-open.png"), full_page=True)
    page.locator("#chatbot .message.bot").last.wait_for(timeout=10_000)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not (len(history.messages(conversation_id)) == 60 and
                                               history.messages(conversation_id)[-1]["status"] == "complete"):
        time.sleep(0.2)  # the reply ends after the fold is shown
    assert len(history.messages(conversation_id)) == 60, "every message stays in history, the reply after them"
