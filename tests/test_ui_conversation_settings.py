"""The "This conversation" panel and pinning, driven as a person would in real Chromium with the
real SmolLM2: open the panel with the keyboard, type the conversation's own system prompt and max
reply tokens, save with Enter, send, read the reply; pin an older conversation and see it on top."""

from __future__ import annotations

import json

from test_ui_browser import bot_text, type_and_send

from app.base.config import load_settings
from app.history import TITLE_BY_USER

PROMPT = "You are Captain Zorblax, a pirate."
REPLY_DONE = ("() => { const s = document.querySelector('#reply-stats').innerText;"
              " return s.includes('tok/s') && !s.includes('…'); }")


def press_on(page, selector: str) -> None:
    """Move the keyboard focus to a control and press Enter on it."""
    page.locator(selector).focus()
    page.keyboard.press("Enter")


def test_the_panel_sets_a_conversations_own_prompt_and_length_and_pinning_puts_it_on_top(served, page, artifacts):
    demo, url = served
    history = demo.nemo.history
    ship = history.create_conversation("Ship talk", TITLE_BY_USER)  # a title the model leaves alone
    history.add_message(ship, "user", "Hello")
    history.add_message(ship, "assistant", "Hello! How can I help?")
    garden = history.create_conversation("Garden plans", TITLE_BY_USER)  # newer: listed above "Ship talk"
    history.add_message(garden, "user", "Tomatoes or beans?")
    page.goto(url)
    page.locator("#conversation-list label", has_text="Ship talk").click()
    page.locator("#chatbot .message.bot", has_text="How can I help").wait_for(timeout=30_000)

    press_on(page, "#conversation-panel button.label-wrap")
    prompt_box = page.locator("#conv-system-prompt textarea")
    prompt_box.wait_for(state="visible", timeout=10_000)
    prompt_box.click()
    page.keyboard.type(PROMPT)
    page.locator("#conv-max-tokens input, #conv-max-tokens textarea").first.click()
    page.keyboard.type("5")
    press_on(page, "#conv-save")
    page.locator("#conv-status", has_text="Saved").wait_for(timeout=10_000)
    page.screenshot(path=str(artifacts / "ui-conversation-panel.png"), full_page=True, animations="disabled")
    assert history.own_settings(ship) == {"system_prompt": PROMPT, "temperature": None, "max_tokens": 5}
    page.locator("#conv-temperature input, #conv-temperature textarea").first.click()
    page.keyboard.type("hot")
    press_on(page, "#conv-save")
    page.locator("#conv-status", has_text="“hot” is not a number").wait_for(timeout=10_000)
    assert history.own_settings(ship)["max_tokens"] == 5, "a refused value changes nothing"

    type_and_send(page, "Count from one to fifty in words.")
    page.locator("#chatbot .message.bot").nth(1).wait_for(timeout=30_000)
    page.wait_for_function(REPLY_DONE, timeout=240_000)
    page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=30_000)
    reply = history.messages(ship)[-1]
    assert reply["role"] == "assistant" and 0 < reply["completion_tokens"] <= 5, "its own max reply tokens bound it"
    assert json.loads(reply["options"])["max_tokens"] == 5
    assert bot_text(page).strip() and reply["content"].strip() in bot_text(page)
    assert demo.nemo.chat.prompt_messages(ship, load_settings())[0] == {"role": "system", "content": PROMPT}

    page.locator("#conversation-list label", has_text="Garden plans").click()  # older now: below "Ship talk"
    page.wait_for_function("() => document.querySelector('#conv-system-prompt textarea').value === ''", timeout=10_000)
    assert page.locator("#conversation-list label").first.inner_text().strip() == "Ship talk"
    press_on(page, "#conv-pin")
    page.locator("#conv-status", has_text="Pinned").wait_for(timeout=10_000)
    page.wait_for_function("() => document.querySelector('#conversation-list label').innerText.includes('Garden plans')",
                           timeout=10_000)
    assert page.locator("#conversation-list label").first.inner_text().strip() == "📌 Garden plans"
    assert page.locator("#conv-pin").inner_text().strip() == "Unpin"
    page.screenshot(path=str(artifacts / "ui-conversation-pinned.png"), full_page=True, animations="disabled")

    page.locator("#conversation-list label", has_text="Ship talk").click()  # its own settings come back with it
    page.wait_for_function(f"() => document.querySelector('#conv-system-prompt textarea').value === {json.dumps(PROMPT)}",
                           timeout=10_000)
    assert page.locator("#conv-max-tokens input, #conv-max-tokens textarea").first.input_value() == "5"
