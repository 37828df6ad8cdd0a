"""Issue 23's small layout defects, walked in Chromium with the real app (SmolLM2): the empty
Documents table says what it is for, the chat's trash icon deletes the open conversation (with
Undo) instead of only leaving it, and no label is cut nor a message covered in en, ar and ja."""

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


CUT = """() => {
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && !e.closest('.sr-only, .hide, .label-wrap'); };  // an Accordion's header is its own row
  const cut = [];
  for (const e of document.querySelectorAll('[data-testid="block-info"], [role=tab], button, .secondary-wrap input')) {
    const words = (e.innerText || e.value || '').trim();
    if (!shown(e) || !words) continue;  // icons have no words to cut
    if (e.scrollWidth > e.clientWidth + 1) cut.push(words.slice(0, 60));
  }
  return cut;
}"""


def test_no_label_is_cut_and_the_chat_icons_leave_the_first_message_free_in_english_arabic_japanese(
        served, page, artifacts):
    """Every tab in en, ar and ja: labels, tab names, buttons and the shown choice of each dropdown
    fit their boxes (scrollWidth <= clientWidth); the Chat tab's Clear and Copy-conversation icons
    do not overlap the first message."""
    demo = one_exchange(served, page, "Name a green vegetable.")
    url = served[1]
    browser = page.context.browser
    for code, locale in (("en", "en-US"), ("ar", "ar-EG"), ("ja", "ja-JP")):
        walker = browser.new_page(locale=locale, viewport={"width": 1280, "height": 900})
        walker.goto(url)
        walker.wait_for_function("lang => document.documentElement.lang.startsWith(lang)", arg=code, timeout=30_000)
        walker.locator("#conversation-list label").first.click()
        walker.locator("#chatbot .message").first.wait_for(timeout=30_000)
        first = walker.locator("#chatbot .message").first.bounding_box()
        for name in ("Copy conversation", text(code, "common_delete"), "Clear"):
            icon = walker.locator("#chatbot").get_by_role("button", name=name, exact=True)
            for n in range(icon.count()):
                box = icon.nth(n).bounding_box()
                if box is None:
                    continue
                apart = (box["x"] + box["width"] <= first["x"] or first["x"] + first["width"] <= box["x"]
                         or box["y"] + box["height"] <= first["y"] or first["y"] + first["height"] <= box["y"])
                assert apart, (code, name, box, first)
        for index in range(walker.get_by_role("tab").count()):
            walker.get_by_role("tab").nth(index).click()
            walker.wait_for_timeout(500)
            assert walker.evaluate(CUT) == [], (code, index)
        walker.screenshot(path=str(artifacts / f"ui-labels-{code}.png"))
        walker.close()
    assert demo.nemo.history.conversations()
