"""The Chat tab driven the way a person drives it: typing, Enter, Shift+Enter, Escape, a second
browser tab, a message sent while a reply is still being written (real Chromium, real SmolLM2)."""

from __future__ import annotations

from dataclasses import replace

from test_ui_browser import bot_text, type_and_send

BOX = "#message-box textarea"
STREAMING = ("() => { const b = document.querySelectorAll('#chatbot .message.bot');"
             " return b.length && !b[b.length-1].innerText.includes('…') && b[b.length-1].innerText.trim().length > 3; }")


def box_has_focus(page) -> bool:
    return page.evaluate("() => !!document.activeElement && !!document.activeElement.closest('#message-box')")


def stats(page) -> str:
    return page.locator("#reply-stats").inner_text()


def test_enter_sends_shift_enter_breaks_the_line_and_escape_stops(served, page, artifacts):
    demo, url = served
    page.goto(url)
    box = page.locator(BOX)
    box.wait_for(timeout=30_000)
    assert page.locator("#stop").is_disabled(), "nothing runs yet: Stop is disabled"
    page.screenshot(path=str(artifacts / "ui-chat-idle.png"))
    box.click()
    page.keyboard.type("Write a long story about the sea.")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("Make it very long.")
    assert box.input_value() == "Write a long story about the sea.\nMake it very long.", "Shift+Enter breaks the line"
    page.keyboard.press("Enter")

    page.locator("#chatbot .message.user", has_text="Make it very long.").wait_for(timeout=60_000)
    page.wait_for_function(f"() => document.querySelector('{BOX}').value === ''", timeout=60_000)
    assert box_has_focus(page), "focus stays in the message box after sending"
    page.wait_for_function(STREAMING, timeout=120_000)
    assert page.locator("#stop").is_enabled(), "Stop is enabled while the reply runs"
    page.screenshot(path=str(artifacts / "ui-chat-streaming.png"))

    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('#reply-stats').innerText.includes('stopped')",
                           timeout=30_000)
    page.locator("#chatbot .message.bot", has_text="■ stopped").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=30_000)
    page.screenshot(path=str(artifacts / "ui-chat-stopped.png"))
    [conversation] = demo.nemo.history.conversations()
    user, reply = demo.nemo.history.messages(conversation["id"])
    assert user["content"] == "Write a long story about the sea.\nMake it very long."
    assert reply["status"] == "stopped" and reply["content"].strip()

    page.reload()  # the mark is kept with the reply: it is there again after reopening
    page.locator("#conversation-list label", has_text="Write a long story").click()
    page.locator("#chatbot .message.bot", has_text="■ stopped").wait_for(timeout=30_000)
    page.locator("#rename-panel").get_by_text("Rename or delete").click()
    assert page.locator("#rename-title textarea").input_value() == conversation["title"], "the title box shows the title"


def test_a_message_sent_while_a_reply_streams_is_shown_kept_and_answered(served, page, artifacts):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, max_tokens=1500, temperature=0.0)  # runs until stopped
    page.goto(url)
    type_and_send(page, "Count from 1 to 1000, separated by commas.")
    page.wait_for_function(STREAMING, timeout=120_000)

    type_and_send(page, "Say hello.")
    page.locator("#chatbot .message.user", has_text="Say hello.").wait_for(timeout=60_000)
    page.wait_for_function(f"() => document.querySelector('{BOX}').value === ''", timeout=60_000)
    [conversation] = demo.nemo.history.conversations()
    assert "Say hello." in [m["content"] for m in demo.nemo.history.messages(conversation["id"])], "stored at once"
    page.locator("#chatbot", has_text="waiting for the model (1 ahead)").wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "ui-chat-waiting.png"))
    assert demo.nemo.history.messages(conversation["id"])[1]["status"] == "streaming", "the first reply still runs"
    demo.nemo.settings = replace(demo.nemo.settings, max_tokens=60)
    page.locator("#stop").click()  # the first reply stops; the message kept meanwhile is answered next

    page.locator("#chatbot .message.bot", has_text="■ stopped").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=180_000)
    rows = demo.nemo.history.messages(conversation["id"])
    assert [(r["role"], r["status"]) for r in rows] == [
        ("user", "complete"), ("assistant", "stopped"), ("user", "complete"), ("assistant", "complete")]
    assert rows[2]["content"] == "Say hello." and rows[1]["content"].strip() and rows[3]["content"].strip()
    assert page.locator("#chatbot .message.bot").count() == 2 and "waiting" not in page.locator("#chatbot").inner_text()
    assert rows[3]["content"].strip()[:20] in bot_text(page).replace("\n", " ")


def test_a_second_tab_shows_its_message_waits_its_turn_and_stops_while_waiting(served, page, artifacts):
    demo, url = served
    demo.nemo.save_settings(replace(demo.nemo.settings, parallel=1, max_tokens=1500))  # one at a time, until stopped
    page.goto(url)
    type_and_send(page, "Write a long story about a lighthouse keeper and the sea.")
    page.wait_for_function(STREAMING, timeout=120_000)

    other = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    other.goto(url)
    type_and_send(other, "What is the capital of France?")
    other.locator("#chatbot .message.user", has_text="capital of France").wait_for(timeout=60_000)
    other.locator("#chatbot", has_text="waiting for the model (1 ahead)").wait_for(timeout=60_000)
    assert other.locator("#stop").is_enabled(), "a waiting request can be stopped"
    assert "queue" not in other.locator("body").inner_text(), "Gradio's own queue does not hold the tab"
    other.screenshot(path=str(artifacts / "ui-chat-second-tab-waiting.png"))

    other.locator("#stop").click()
    other.wait_for_function("() => document.querySelector('#reply-stats').innerText.includes('stopped before')",
                            timeout=30_000)
    other.wait_for_function("() => document.querySelector('#stop').disabled", timeout=30_000)
    assert other.locator("#chatbot .message.bot").all_inner_texts() == ["No reply yet: press ↻ to get one."], \
        "no empty reply: a note whose Retry answers the message"
    other.screenshot(path=str(artifacts / "ui-chat-unanswered.png"))
    assert "tok/s" not in stats(other)
    first, second = demo.nemo.history.conversations()[::-1]
    assert [(m["role"], m["content"]) for m in demo.nemo.history.messages(second["id"])] == [
        ("user", "What is the capital of France?")], "kept, unanswered"
    assert demo.nemo.history.messages(first["id"])[-1]["status"] == "streaming", "tab A's reply runs on"

    page.keyboard.press("Escape")
    page.locator("#chatbot .message.bot", has_text="■ stopped").wait_for(timeout=30_000)
    other.close()
