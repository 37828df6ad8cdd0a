"""The real UI in Debian's headless Chromium, driven by Playwright, on 127.0.0.1."""

from __future__ import annotations

import json
from urllib.parse import urlparse



def bot_text(page) -> str:
    bots = page.locator("#chatbot .message.bot")
    return bots.last.inner_text() if bots.count() else ""


def start_a_long_reply(page, url: str) -> None:
    """Open the app, ask for a long story and wait until the reply is streaming."""
    page.goto(url)
    page.locator("#message-box textarea").fill("Write a long story about a lighthouse keeper and the sea.")
    page.locator("#send").click()
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
    assert reply["content"].strip()[:30] in bot_text(page).replace("\n", " ") or \
        reply["content"].split()[0] in bot_text(page)
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
    page.locator("#message-box textarea").fill("Still there?")
    page.locator("#send").click()
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
    other.locator("#stop").click()
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
