"""Two of issue 23's small defects, walked in Chromium with the real app (SmolLM2): the empty
Documents table says what it is for, and the chat's trash icon deletes the open conversation
(with Undo) instead of only leaving it."""

from __future__ import annotations

from playwright.sync_api import expect
from test_ui_documents import drop_files
from test_ui_walk import one_exchange

from app.faces.i18n import text


def test_the_empty_documents_table_says_how_to_fill_it(served, page, artifacts):
    demo, url = served
    page.goto(url)
    page.get_by_role("tab", name="Documents").click()
    hint = page.locator("#doc-empty")
    expect(hint).to_contain_text(text("en", "documents_empty"), timeout=30_000)
    page.screenshot(path=str(artifacts / "ui-documents-empty.png"))

    drop_files(page, [("garden.md", "text/markdown", b"# Garden\n\nThe roses bloom in June and the lilies in July.\n")])
    page.locator("#doc-table", has_text="garden.md").wait_for(timeout=30_000)
    expect(hint).not_to_contain_text(text("en", "documents_empty"), timeout=10_000)
    page.locator("#doc-search input, #doc-search textarea").first.click()
    page.keyboard.type("volcano")
    expect(hint).to_contain_text("No document matches “volcano”.", timeout=10_000)


def test_the_chats_trash_icon_deletes_the_conversation_with_undo(served, page, artifacts):
    demo = one_exchange(served, page, "Name a red fruit.")
    [conversation] = demo.nemo.history.conversations()
    listed = page.locator("#conversation-list label")
    expect(listed).to_have_count(1, timeout=10_000)

    page.locator("#chatbot").get_by_role("button", name="Clear").click()
    expect(listed).to_have_count(0, timeout=30_000)
    expect(page.locator("#undo-bar")).to_be_visible()
    page.screenshot(path=str(artifacts / "ui-chat-trash-deleted.png"))
    assert demo.nemo.history.conversations() == [], "in the trash, not only out of view"

    page.locator("#undo").click()
    expect(listed).to_have_count(1, timeout=30_000)
    assert [c["id"] for c in demo.nemo.history.conversations()] == [conversation["id"]]
