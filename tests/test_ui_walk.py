"""The defects of issue 23's walk, driven as a person drives the page (real Chromium, real SmolLM2):
typing with the keyboard and reading what the page shows."""

from __future__ import annotations

import re
from dataclasses import replace

from playwright.sync_api import expect
from test_ui_browser import type_and_send
from test_ui_history import versions_bar, wait_for_reply
from test_ui_keyboard import STREAMING

from app.faces.chat_view import SIDEBAR_PAGE

EDIT_BOX = "#chatbot textarea.edit-textarea"


def one_exchange(served, page, question: str):
    """Open the app, send `question` with the keyboard and wait for its short reply; the app."""
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, max_tokens=6, temperature=0.0)
    page.goto(url)
    type_and_send(page, question)
    wait_for_reply(demo, page, 1)
    return demo


def start_editing(page, text: str) -> None:
    """Hover the user's message holding `text`, press its Edit and put the cursor in the edit box."""
    page.locator("#chatbot .message.user", has_text=text).hover()
    page.locator("#chatbot").get_by_role("button", name="Edit").first.click()
    page.locator(EDIT_BOX).click()
    page.keyboard.press("Control+A")


def test_editing_a_message_enter_submits_shift_enter_breaks_the_line_escape_cancels(served, page, artifacts):
    demo = one_exchange(served, page, "My cat is called Whiskers.")

    start_editing(page, "Whiskers")
    page.keyboard.type("My dog is called Rex.")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("He is brown.")
    assert page.locator(EDIT_BOX).input_value() == "My dog is called Rex.\nHe is brown.", "Shift+Enter breaks the line"
    page.screenshot(path=str(artifacts / "ui-walk-editing.png"))
    page.keyboard.press("Enter")
    expect(versions_bar(page, "Rex")).to_contain_text("2/2", timeout=60_000)
    expect(page.locator(EDIT_BOX)).to_have_count(0)
    wait_for_reply(demo, page, 1)
    [conversation] = demo.nemo.history.conversations()
    assert demo.nemo.history.messages(conversation["id"])[0]["content"] == "My dog is called Rex.\nHe is brown."

    start_editing(page, "Rex")
    page.keyboard.type("Forget it.")
    page.keyboard.press("Escape")
    expect(page.locator(EDIT_BOX)).to_have_count(0, timeout=10_000)
    expect(page.locator("#chatbot .message.user")).to_contain_text("He is brown.")
    assert "Forget it." not in page.locator("#chatbot").inner_text(), "Escape drops the edit"
    expect(versions_bar(page, "Rex")).to_contain_text("2/2")
    assert [m["content"] for m in demo.nemo.history.messages(conversation["id"]) if m["role"] == "user"] == [
        "My dog is called Rex.\nHe is brown."], "nothing was sent"


def test_after_new_chat_what_is_typed_goes_to_the_message_box(served, page, artifacts):
    demo = one_exchange(served, page, "Hello there.")

    page.locator("#new-chat").focus()
    page.keyboard.press("Enter")  # New chat, from the keyboard
    expect(page.locator("#chatbot .message")).to_have_count(0, timeout=30_000)
    page.wait_for_function("() => document.activeElement && !!document.activeElement.closest('#message-box')",
                           timeout=10_000)
    page.screenshot(path=str(artifacts / "ui-walk-new-chat.png"))
    page.keyboard.type("A fresh question.")  # no click: the cursor is in the message box
    page.keyboard.press("Enter")
    page.locator("#chatbot .message.user", has_text="A fresh question.").wait_for(timeout=30_000)
    assert len(demo.nemo.history.conversations()) == 2, "sent in a new conversation"


def test_more_conversations_shows_only_while_the_list_leaves_some_out(served, page, artifacts):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, max_tokens=4, temperature=0.0)
    for n in range(SIDEBAR_PAGE):
        demo.nemo.history.create_conversation(f"Old talk {n:02d}")
    more = page.locator("#more-conversations")
    page.goto(url)
    expect(page.locator("#conversation-list label")).to_have_count(SIDEBAR_PAGE, timeout=30_000)
    expect(more).to_be_hidden()
    page.locator("#conversation-list label").last.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ui-walk-all-listed.png"))

    type_and_send(page, "One more talk.")  # a conversation more than the list holds
    wait_for_reply(demo, page, 1)
    expect(more).to_be_visible(timeout=30_000)
    expect(page.locator("#conversation-list label")).to_have_count(SIDEBAR_PAGE)
    more.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ui-walk-more-left.png"))
    more.click()
    expect(page.locator("#conversation-list label")).to_have_count(SIDEBAR_PAGE + 1, timeout=30_000)
    expect(more).to_be_hidden(timeout=30_000)

    page.locator("#search textarea").click()
    page.keyboard.type("One more")  # a search lists every hit: nothing more to show
    expect(page.locator("#search-hits .hit").first).to_be_visible(timeout=30_000)
    expect(more).to_be_hidden()


def test_copy_conversation_copies_the_messages_without_the_stopped_mark(served, page, artifacts):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, max_tokens=1500)  # runs until stopped
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(url)
    type_and_send(page, "Write a long story about the sea.")
    page.wait_for_function(STREAMING, timeout=120_000)
    page.keyboard.press("Escape")
    page.locator("#chatbot .message.bot", has_text="■ stopped").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=30_000)

    page.locator("#chatbot").get_by_role("button", name="Copy conversation").click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()).startsWith('user: ')", timeout=10_000)
    copied = page.evaluate("() => navigator.clipboard.readText()")
    [conversation] = demo.nemo.history.conversations()
    question, reply = demo.nemo.history.messages(conversation["id"])
    assert reply["status"] == "stopped"
    assert copied == f"user: Write a long story about the sea.\n\nassistant: {reply['content']}"
    assert "stopped" not in copied, "the page's mark is not part of the conversation"
    page.screenshot(path=str(artifacts / "ui-walk-copied.png"))


def test_context_presets_show_the_context_and_leaving_them_keeps_it(served, page, artifacts):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, n_ctx=8192)
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    presets, context = page.locator("#context-preset input"), page.get_by_label("Context size (tokens)")
    expect(presets).to_have_value(re.compile(r"^8k · K/V "), timeout=30_000)
    expect(context).to_have_value("8192")
    presets.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ui-walk-context-presets.png"))

    presets.click()  # opened, and left without a choice: with Tab, then with Escape
    expect(page.get_by_role("option").first).to_be_visible()
    page.keyboard.press("Tab")
    presets.click()
    page.keyboard.press("Escape")
    page.locator("#gpu-plan").click()
    expect(context).to_have_value("8192")
    expect(presets).to_have_value(re.compile(r"^8k · K/V "))
    page.locator("#save-settings").click()
    expect(page.locator("#settings-status")).to_contain_text("Saved", timeout=30_000)
    assert demo.nemo.settings.n_ctx == 8192

    presets.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("16k")
    expect(page.get_by_role("option")).to_have_count(1)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(context).to_have_value("16384", timeout=30_000)
    context.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("5000")
    page.keyboard.press("Enter")
    expect(presets).to_have_value(re.compile(r"^5,000"), timeout=30_000)


def test_search_hits_are_not_all_bold_and_their_snippets_start_at_a_word(served, page, artifacts):
    demo, url = served
    history = demo.nemo.history
    cid = history.create_conversation("Harbour notes")
    history.add_message(cid, "user", "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
                        "incididunt ut labore et dolore magna aliqua. The lighthouse keeper watched the harbour "
                        "while seagulls circled above the breakwater and fishermen mended their nets.")
    page.goto(url)
    page.locator("#search textarea").click()
    page.keyboard.type("lighthouse")
    hit = page.locator("#search-hits .hit").first
    snippet = hit.locator(".hit-snippet")
    expect(snippet.locator("mark")).to_have_text("lighthouse", timeout=30_000)  # the hits of the whole word
    expect(hit.locator(".hit-title")).to_have_text("Harbour notes")
    assert snippet.inner_text().startswith("…tempor incididunt"), snippet.inner_text()
    assert snippet.inner_text().endswith(" above the…"), snippet.inner_text()
    weight = "(e) => getComputedStyle(e).fontWeight"
    assert int(snippet.evaluate(weight)) < 600, "the snippet is not bold"
    assert int(hit.locator(".hit-title").evaluate(weight)) >= 600, "the title is"
    assert int(snippet.locator("mark").evaluate(weight)) >= 600, "and so is the match"
    page.screenshot(path=str(artifacts / "ui-walk-search-hits.png"))


def test_stop_turns_off_once_the_reply_is_written_while_the_model_still_titles_the_chat(served, page, artifacts,
                                                                                       monkeypatch):
    """docs/screenshots/chat-en.png showed Stop red under a finished reply: the tab's job goes on to
    title the conversation, and Stop followed the job. Held at the title here (the model's title
    waits until the page has been read), the finished reply has Stop off, and it stays off once
    the title is written; Escape then stops nothing."""
    import threading

    from app.services import chat_queue

    titling, go_on, title = threading.Event(), threading.Event(), chat_queue.retitle

    def held_title(*args, **kwargs):
        titling.set()
        go_on.wait(60)
        return title(*args, **kwargs)

    monkeypatch.setattr(chat_queue, "retitle", held_title)
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, max_tokens=8, temperature=0.0)
    page.goto(url)
    type_and_send(page, "Name a yellow fruit.")
    assert titling.wait(120), "the reply was written and the title begun"
    stop = page.locator("#stop")
    try:
        expect(page.locator("#reply-stats")).to_contain_text("tok/s", timeout=30_000)
        expect(stop).to_be_disabled(timeout=10_000)
        page.screenshot(path=str(artifacts / "ui-walk-stop-off-while-titling.png"))
    finally:
        go_on.set()
    wait_for_reply(demo, page, 1)  # stored complete, Stop off
    page.keyboard.press("Escape")
    expect(stop).to_be_disabled()
    [conversation] = demo.nemo.history.conversations()
    assert [m["status"] for m in demo.nemo.history.messages(conversation["id"])] == ["complete", "complete"]
