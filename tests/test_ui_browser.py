"""The real UI in Debian's headless Chromium, driven by Playwright, on 127.0.0.1."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from urllib.parse import urlparse

import pytest

from app.base.errors import UserError



def bot_text(page) -> str:
    bots = page.locator("#chatbot .message.bot")
    return bots.last.inner_text() if bots.count() else ""


def words(text: str) -> list[str]:
    """The words of a text with Markdown's marks and list numbers left out, as a page shows them."""
    return re.findall(r"[^\W_]+(?:'[^\W_]+)?", re.sub(r"(?m)^\s*(\d+\.|[-*+])\s", " ", text))


def type_and_send(page, text: str) -> None:
    """Click into the message box, type like a person and press Enter."""
    page.locator("#message-box textarea").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def start_a_long_reply(page, url: str) -> None:
    """Open the app, ask for a long story and wait until the reply is streaming."""
    page.goto(url)
    type_and_send(page, "Write a long story about a lighthouse keeper and the sea.")
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chatbot .message.bot');"
        " return b.length && b[b.length-1].innerText.length > 20; }", timeout=60_000)


def test_send_stream_stop_reload_and_reopen(served, page, artifacts):
    demo, url = served
    start_a_long_reply(page, url)
    first = len(bot_text(page))
    page.wait_for_function(  # the reply keeps growing while it streams
        "n => { const b = document.querySelectorAll('#chatbot .message.bot');"
        " return b[b.length-1].innerText.length > n; }", arg=first, timeout=60_000)
    page.locator("#stop").click()
    page.wait_for_function("() => document.querySelector('#reply-stats').innerText.includes('stopped')",
                           timeout=30_000)
    stopped_text = bot_text(page)

    ui = demo.nemo
    [conversation] = ui.history.conversations()
    user, reply = ui.history.messages(conversation["id"])
    assert reply["status"] == "stopped" and reply["content"].strip()
    assert bot_text(page) == stopped_text, "nothing more arrives after Stop"

    page.reload()
    item = page.locator("#conversation-list label", has_text="lighthouse keeper")
    item.wait_for(timeout=30_000)
    item.click()
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot').length == 1",
        timeout=30_000)
    assert "lighthouse keeper" in page.locator("#chatbot").inner_text()
    shown = " ".join(words(bot_text(page)))
    assert len(words(reply["content"])) >= 3 and " ".join(words(reply["content"])[:8]) in shown, \
        "the reopened reply shows the saved one's words"
    page.screenshot(path=str(artifacts / "ui-chat-reopened.png"), full_page=True)

    hosts = {urlparse(u).hostname for u in page.requests_seen if u.startswith("http")}
    assert hosts <= {"127.0.0.1"}, f"the page must not call out: {hosts}"


def test_right_to_left_text_is_laid_out_right_to_left(served, page):
    demo, url = served
    ui = demo.nemo
    cid = ui.history.create_conversation("عربي")
    ui.history.add_message(cid, "user", "مرحبا، كيف حالك اليوم؟ هذا نص عربي طويل بما يكفي.")
    ui.history.add_message(cid, "assistant", "This reply is English, written left to right.")
    page.goto(url)
    page.locator("#conversation-list label", has_text="عربي").click()
    page.locator("#chatbot p", has_text="مرحبا").wait_for(timeout=30_000)
    rtl = page.locator("#chatbot p", has_text="مرحبا").evaluate(
        "p => { const r = document.createRange(); r.selectNodeContents(p); const t = r.getBoundingClientRect();"
        " const box = p.getBoundingClientRect(); return [t.right - box.left, box.right - t.right]; }")
    ltr = page.locator("#chatbot p", has_text="English").evaluate(
        "p => { const r = document.createRange(); r.selectNodeContents(p); const t = r.getBoundingClientRect();"
        " const box = p.getBoundingClientRect(); return [t.left - box.left, box.right - t.right]; }")
    assert rtl[1] < 2, "Arabic text hugs the right edge"
    assert ltr[0] < 2, "English text hugs the left edge"


def test_a_bad_model_shows_a_message_and_the_app_keeps_serving(served, page, tmp_path):
    demo, url = served
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    model_box = page.locator("#model-name input")
    model_box.fill(str(tmp_path / "missing.gguf"))
    model_box.press("Enter")
    page.locator("#save-settings").click()
    page.wait_for_function("() => document.querySelector('#settings-status').innerText.includes('not found')",
                           timeout=30_000)
    page.get_by_role("tab", name="Chat").click()
    type_and_send(page, "Still there?")
    page.wait_for_function("() => document.querySelectorAll('#chatbot .message.bot').length == 1",
                           timeout=60_000)
    assert bot_text(page).strip()


def test_tool_steps_show_as_collapsible_boxes(served, page):
    demo, url = served
    history = demo.nemo.history
    cid = history.create_conversation("tool use")
    history.add_message(cid, "user", "What is 6 times 7?")
    step = {"id": "abcDEF123", "name": "calculator", "arguments": {"expression": "6*7"}, "round": 1,
            "result": {"result": 42}, "error": None, "content": '{"result": 42}'}
    history.add_message(cid, "tool", json.dumps(step))
    history.add_message(cid, "assistant", "It is 42.")
    page.goto(url)
    page.locator("#conversation-list label", has_text="tool use").click()
    title = page.locator("#chatbot", has_text="Tool: calculator")
    title.wait_for(timeout=30_000)
    assert "It is 42." in page.locator("#chatbot").inner_text()


def test_stop_in_one_browser_tab_leaves_the_other_tabs_reply_running(served, page, artifacts):
    """Each browser tab has its own jobs: Stop in tab B (chat and documents), pressed while tab A's
    reply streams, does not touch it: A's reply runs to its end and is saved complete."""
    demo, url = served
    start_a_long_reply(page, url)

    other = page.context.browser.new_page()  # a second browser tab: its own Gradio session
    other.goto(url)
    other.locator("#message-box textarea").wait_for(timeout=30_000)
    assert other.locator("#stop").is_disabled(), "nothing runs in tab B: its Stop is disabled"
    other.keyboard.press("Escape")
    other.get_by_role("tab", name="Documents").click()
    other.locator("#doc-stop").click()
    [conversation] = demo.nemo.history.conversations()
    reply = demo.nemo.history.messages(conversation["id"])[-1]
    assert reply["status"] == "streaming", "tab B pressed Stop while tab A's reply was streaming"

    page.wait_for_function("() => { const s = document.querySelector('#reply-stats').innerText;"
                           " return s.includes('tok/s') && !s.includes('…'); }", timeout=240_000)
    assert "stopped" not in page.locator("#reply-stats").inner_text()
    reply = demo.nemo.history.messages(conversation["id"])[-1]
    assert reply["status"] == "complete" and reply["content"].strip()
    page.screenshot(path=str(artifacts / "ui-two-tabs-stop.png"), full_page=True)


def seed_conversation(history, title: str, question: str, answer: str) -> int:
    cid = history.create_conversation(title)
    history.add_message(cid, "user", question)
    history.add_message(cid, "assistant", answer)
    return cid


def open_conversation(page, title: str) -> None:
    page.locator("#conversation-list label", has_text=title).click()
    page.locator("#chatbot .message.bot").first.wait_for(timeout=30_000)


def overlaps(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def test_the_trash_icon_starts_a_new_conversation(served, page, artifacts):
    demo, url = served
    history = demo.nemo.history
    long_question = "Tell me about harbours and the sea, and the ships that come and go all day long " * 2
    first = seed_conversation(history, "Harbours", long_question, "Harbours are sheltered places.")
    page.goto(url)
    open_conversation(page, "Harbours")
    toolbar = page.locator("#chatbot button[aria-label='Clear']").bounding_box()
    message = page.locator("#chatbot .message.user").first.bounding_box()
    assert not overlaps(toolbar, message), "the chat's icons leave the first message readable"

    page.locator("#chatbot button[aria-label='Clear']").click()
    page.wait_for_function("() => !document.querySelector('#chatbot .message')", timeout=10_000)
    type_and_send(page, "Hello again.")
    page.locator("#chatbot .message.user", has_text="Hello again.").wait_for(timeout=10_000)
    assert "harbours" not in page.locator("#chatbot").inner_text().lower(), "the old messages stay away"
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=60_000)
    assert [m["content"] for m in history.messages(first)] == [long_question, "Harbours are sheltered places."]
    second = next(c for c in history.conversations() if c["id"] != first)
    assert history.messages(second["id"])[0]["content"] == "Hello again."


def test_a_deleted_conversation_can_be_undone_until_the_notice_goes(served, page, artifacts):
    demo, url = served
    history = demo.nemo.history
    cid = seed_conversation(history, "Harbour plans", "Where is the lighthouse?", "On the cliff.")
    seed_conversation(history, "Recipes", "How do I bake bread?", "With flour.")
    page.goto(url)
    open_conversation(page, "Harbour plans")
    page.locator("#rename-panel").get_by_text("Rename or delete").click()
    page.locator("#delete").click()
    page.locator("#undo-bar", has_text="Deleted “Harbour plans”").wait_for(timeout=10_000)
    assert page.locator("#conversation-list label", has_text="Harbour plans").count() == 0
    assert [c["title"] for c in history.conversations()] == ["Recipes"]
    assert len(history.messages(cid)) == 2, "nothing is deleted while Undo is offered"
    page.screenshot(path=str(artifacts / "ui-chat-undo-delete.png"))

    page.locator("#undo").click()
    page.locator("#conversation-list label", has_text="Harbour plans").wait_for(timeout=10_000)
    page.locator("#chatbot .message.bot", has_text="On the cliff.").wait_for(timeout=10_000)
    assert page.locator("#undo-bar").is_hidden()

    page.locator("#delete").click()
    page.locator("#undo-bar").wait_for(timeout=10_000)
    page.locator("#undo-bar").wait_for(state="hidden", timeout=40_000)
    with pytest.raises(UserError):
        history.conversation(cid)
    assert history.messages(cid) == [] and [c["title"] for c in history.conversations()] == ["Recipes"]


def test_rename_fills_the_title_and_shows_its_errors_beside_it(served, page):
    demo, url = served
    cid = seed_conversation(demo.nemo.history, "Old name", "Hello", "Hi.")
    page.goto(url)
    open_conversation(page, "Old name")
    page.locator("#rename-panel").get_by_text("Rename or delete").click()
    title = page.locator("#rename-title textarea")
    assert title.input_value() == "Old name"
    title.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.press("Enter")
    page.locator("#rename-status", has_text="cannot be empty").wait_for(timeout=10_000)
    assert page.locator("#notice").inner_text().strip() == "", "the chat pane stays clear"
    page.keyboard.type("New name")
    page.keyboard.press("Enter")
    page.locator("#conversation-list label", has_text="New name").wait_for(timeout=10_000)
    assert demo.nemo.history.conversation(cid)["title"] == "New name"


def test_settings_show_the_model_in_use(served, page):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, model="")  # none named: the first one available is used
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    field = page.locator("#model-name input")
    page.wait_for_function("() => document.querySelector('#model-name input').value !== ''", timeout=10_000)
    assert field.input_value() == "smollm2"
