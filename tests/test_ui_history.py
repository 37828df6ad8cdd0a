"""The history in the browser (issue 15), driven like a person: Edit makes a version, ‹ › switch
versions and the next reply follows the branch shown (the prompt the engine got is decoded);
a search hit opens its message, scrolled into view; export downloads a file and a dropped file is
imported; 10,000 conversations and a 2,000-message conversation (real Chromium, real SmolLM2)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

from playwright.sync_api import expect
from test_ui_browser import type_and_send
from test_ui_documents import DROP

from app.faces.chat_window import CHAT_WINDOW
from app.faces.temp_files import private_tmp


def record_prompts(demo) -> list[str]:
    """Every prompt the engine is given from now on, decoded with the engine's own tokenizer."""
    engine, seen = demo.nemo.chat.engine, []
    complete = engine.complete

    def spy(prompt_ids, *args, **kwargs):
        seen.append(engine.detokenize(list(prompt_ids)))
        return complete(prompt_ids, *args, **kwargs)

    engine.complete = spy
    return seen


def wait_for_reply(demo, page, replies: int) -> None:
    """Until the conversation shown has `replies` finished replies and Stop is disabled again."""
    history = demo.nemo.history
    deadline = time.monotonic() + 120
    while True:
        conversations = history.conversations()
        rows = history.messages(conversations[0]["id"]) if conversations else []
        done = [r for r in rows if r["role"] == "assistant" and r["status"] == "complete"]
        if len(done) >= replies and rows[-1]["role"] == "assistant" and rows[-1]["status"] == "complete":
            break
        assert time.monotonic() < deadline, f"{replies} finished replies never came: {rows}"
        time.sleep(0.2)
    page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=60_000)


def versions_bar(page, text: str):
    return page.locator("#chatbot .message.user", has_text=text).locator(".nemo-versions")


def test_edit_keeps_the_old_version_the_arrows_switch_and_the_next_reply_follows_the_branch_shown(
        served, page, artifacts):
    demo, url = served
    demo.nemo.settings = replace(demo.nemo.settings, max_tokens=6, temperature=0.0)
    prompts = record_prompts(demo)
    page.goto(url)
    type_and_send(page, "My cat is called Whiskers.")
    wait_for_reply(demo, page, 1)

    question = page.locator("#chatbot .message.user", has_text="Whiskers")
    question.hover()
    page.locator("#chatbot").get_by_role("button", name="Edit").first.click()
    edit_box = page.locator("#chatbot textarea.edit-textarea")
    edit_box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("My dog is called Rex.")
    page.locator("#chatbot").get_by_role("button", name="Submit").first.click()
    expect(versions_bar(page, "Rex")).to_contain_text("2/2", timeout=60_000)
    wait_for_reply(demo, page, 1)
    assert "Whiskers" not in page.locator("#chatbot").inner_text(), "the edited version replaces the old one"
    page.screenshot(path=str(artifacts / "ui-history-versions.png"))

    versions_bar(page, "Rex").get_by_role("button", name="Previous version").click()
    expect(versions_bar(page, "Whiskers")).to_contain_text("1/2", timeout=30_000)
    assert "Rex" not in page.locator("#chatbot").inner_text(), "the old branch is shown"
    [conversation] = demo.nemo.history.conversations()
    assert demo.nemo.history.messages(conversation["id"])[0]["content"] == "My cat is called Whiskers."

    prompts.clear()
    type_and_send(page, "What is my pet called?")
    wait_for_reply(demo, page, 2)
    prompt = next(p for p in prompts if "What is my pet called?" in p)
    assert "Whiskers" in prompt and "Rex" not in prompt, "the reply follows the branch shown"
    page.screenshot(path=str(artifacts / "ui-history-old-branch.png"))

    versions_bar(page, "Whiskers").get_by_role("button", name="Next version").click()
    expect(versions_bar(page, "Rex")).to_contain_text("2/2", timeout=30_000)
    assert "What is my pet called?" not in page.locator("#chatbot").inner_text(), "the other branch has no third turn"


def write_conversation(history, title: str, contents: list[str], at: float) -> int:
    """A conversation written straight into SQLite: one branch, user and assistant in turn."""
    with history.database.transaction() as conn:
        cid = conn.execute("INSERT INTO conversations (title, title_by, created_at, updated_at) VALUES (?, 'user', ?, ?)",
                           [title, at, at]).lastrowid
        parent = None
        for n, content in enumerate(contents):
            parent = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at, parent_id)"
                " VALUES (?, ?, ?, 'complete', ?, ?, ?)",
                [cid, ("user", "assistant")[n % 2], content, at + n, at + n, parent]).lastrowid
        conn.execute("UPDATE conversations SET current_id = ? WHERE id = ?", [parent, cid])
    return cid


def test_a_search_hit_shows_the_match_and_opens_its_message_on_its_branch(served, page, artifacts):
    demo, url = served
    history = demo.nemo.history
    filler = [f"Turn {n}: a sentence about the weather, the sea and the harbour." for n in range(60)]
    write_conversation(history, "Long chat", filler[:8] + ["नमस्ते दुनिया, यह खोज का संदेश है।"] + filler[9:], 1000)
    branched = write_conversation(history, "<img src=x onerror=alert(1)> pets", ["Tell me about 猫 <b>please</b>.", "Cats purr."], 2000)
    old_question = history.messages(branched)[0]["id"]
    history.branch_before(old_question)
    history.add_message(branched, "user", "Tell me about dogs.")
    history.add_message(branched, "assistant", "Dogs bark.")

    page.goto(url)
    page.locator("#conversation-list label", has_text="Long chat").wait_for(timeout=30_000)  # the page has loaded
    page.locator("#search textarea").click()
    page.keyboard.type("दुनिया")
    hit = page.locator("#search-hits button.hit", has_text="Long chat")
    expect(hit.locator("mark")).to_have_text("दुनिया", timeout=30_000)  # the match is marked
    page.screenshot(path=str(artifacts / "ui-history-search.png"))
    hit.click()
    found = page.locator("#chatbot .message.user", has_text="नमस्ते दुनिया")
    expect(found).to_be_in_viewport(timeout=30_000)
    expect(page.locator("#chatbot .message.user", has_text="Turn 0:")).not_to_be_in_viewport()
    page.screenshot(path=str(artifacts / "ui-history-search-opened.png"))

    page.locator("#search textarea").fill("")
    page.locator("#search textarea").click()
    page.keyboard.type("猫")  # one character, on the branch not shown
    hit = page.locator("#search-hits button.hit", has_text="pets")
    expect(hit.locator("mark")).to_have_text("猫", timeout=30_000)
    assert "<b>please</b>" in hit.inner_text() and hit.locator("b, img").count() == 0, "message text is shown as text"
    hit.click()
    expect(page.locator("#chatbot .message.user", has_text="Tell me about 猫")).to_be_visible(timeout=30_000)
    assert "Dogs bark." not in page.locator("#chatbot").inner_text(), "the hit's branch is shown"
    expect(versions_bar(page, "Tell me about 猫")).to_contain_text("1/2")

    page.locator("#search textarea").fill("")
    page.locator("#search textarea").click()
    page.keyboard.type("zqx")
    expect(page.locator("#search-hits")).to_contain_text("No message contains “zqx”.", timeout=30_000)


def drop_on_import(page, name: str, data: bytes) -> None:
    zone = page.locator("#import-drop .upload-container")
    zone.wait_for(timeout=30_000)
    zone.evaluate(DROP, [[name, "application/json", base64.b64encode(data).decode()]])


def uploads_left(name: str) -> list:
    return [p for p in private_tmp().rglob(name) if p.is_file()]


def exported_text(page, fmt: str, button: str, file_name: str) -> str:
    """Pick the format, press the export button, download the file it offers and read it."""
    page.get_by_label(fmt).check()
    page.get_by_role("button", name=button).click()
    link = page.locator(f'#export-file a[download="{file_name}"]')
    link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    return download.value.path().read_text(encoding="utf-8")


def test_export_downloads_and_a_dropped_file_is_imported_or_refused_in_one_line(served, page, artifacts, tmp_path):
    demo, url = served
    history = demo.nemo.history
    write_conversation(history, "Harbour notes", ["Where is the ferry?", "At pier 4."], 1000)
    page.goto(url)
    page.locator("#exchange-panel").get_by_text("Export and import").click()

    openai_style = {"title": "Imported trip", "messages": [{"role": "user", "content": "Plan a trip to Kyoto."},
                                                            {"role": "assistant", "content": "Day 1: temples."}]}
    drop_on_import(page, "trip.json", json.dumps(openai_style).encode())
    expect(page.locator("#exchange-status")).to_contain_text("1 conversations, 2 messages imported, 0 skipped",
                                                             timeout=30_000)
    expect(page.locator("#conversation-list label", has_text="Imported trip")).to_be_visible(timeout=10_000)
    assert uploads_left("trip.json") == [], "the upload is deleted once imported"
    page.screenshot(path=str(artifacts / "ui-history-imported.png"))

    drop_on_import(page, "broken.json", b'{"messages": [')
    expect(page.locator("#exchange-status")).to_contain_text("broken.json: not valid JSON", timeout=30_000)
    assert "\n" not in page.locator("#exchange-status").inner_text().strip(), "one line"
    assert uploads_left("broken.json") == [] and len(history.conversations()) == 2, "nothing imported"
    page.screenshot(path=str(artifacts / "ui-history-import-refused.png"))

    text = exported_text(page, "Markdown", "Export all", "nemo-chat history.md")
    assert "# Harbour notes" in text and "At pier 4." in text and "Day 1: temples." in text

    page.locator("#conversation-list label", has_text="Imported trip").click()
    exported = json.loads(exported_text(page, "JSON", "Export this conversation", "Imported trip.json"))
    assert [c["title"] for c in exported["conversations"]] == ["Imported trip"]
    assert [m["content"] for m in exported["conversations"][0]["messages"]] == ["Plan a trip to Kyoto.", "Day 1: temples."]
    page.screenshot(path=str(artifacts / "ui-history-exported.png"))


def write_many(history, conversations: int, long_messages: int) -> int:
    """`conversations` small conversations and one of `long_messages` messages, straight into SQLite."""
    started = 1_000_000.0
    with history.database.transaction() as conn:
        conn.executemany("INSERT INTO conversations (title, title_by, created_at, updated_at) VALUES (?, 'user', ?, ?)",
                         [(f"Conversation {n:05d}", started + n, started + n) for n in range(conversations)])
    words = "The harbour master reads the tide tables before the ferries leave; " * 3
    return write_conversation(history, "Two thousand messages", [f"Message {n}: {words}" for n in range(long_messages)],
                              started + conversations + 1)


def test_ten_thousand_conversations_and_a_two_thousand_message_conversation(served, page, artifacts):
    demo, url = served
    write_many(demo.nemo.history, 10_000, 2_000)
    measured = {}

    started = time.perf_counter()
    page.goto(url)
    page.locator("#conversation-list label", has_text="Two thousand messages").wait_for(timeout=60_000)
    measured["sidebar first page (s)"] = time.perf_counter() - started
    assert page.locator("#conversation-list label").count() == 50, "the sidebar lists a page, not 10,000"

    started = time.perf_counter()
    page.get_by_role("button", name="More conversations").click()
    page.locator("#conversation-list label").nth(99).wait_for(timeout=30_000)
    measured["More: 50 more (s)"] = time.perf_counter() - started

    started = time.perf_counter()
    page.locator("#conversation-list label", has_text="Two thousand messages").click()
    page.locator("#chatbot .message.bot", has_text="Message 1999: The harbour").wait_for(timeout=120_000)
    measured["open 2,000 messages (s)"] = time.perf_counter() - started
    bubbles = "() => document.querySelectorAll('#chatbot [data-testid=user], #chatbot [data-testid=bot]').length"
    assert page.evaluate(bubbles) == CHAT_WINDOW + 1, "the latest bubbles, after one that offers the earlier ones"
    page.screenshot(path=str(artifacts / "ui-history-2000.png"))

    started = time.perf_counter()
    page.locator("#chatbot button.show-earlier").click()
    page.locator("#chatbot .message.user", has_text=f"Message {2000 - 2 * CHAT_WINDOW}: The").wait_for(timeout=60_000)
    measured["show 200 earlier (s)"] = time.perf_counter() - started
    assert page.evaluate(bubbles) == 2 * CHAT_WINDOW + 1

    frames = page.evaluate("""async () => {
        const box = document.querySelector('#chatbot .bubble-wrap');
        const started = performance.now(); let frames = 0, worst = 0, last = started;
        for (let y = box.scrollHeight; y > -box.clientHeight; y -= box.clientHeight) {  // the last one: the top
            box.scrollTop = Math.max(y, 0);
            await new Promise(r => requestAnimationFrame(r));
            const now = performance.now(); worst = Math.max(worst, now - last); last = now; frames++;
        }
        return {frames, total_ms: performance.now() - started, worst_frame_ms: worst};
    }""")
    expect(page.locator("#chatbot button.show-earlier")).to_be_in_viewport()
    page.screenshot(path=str(artifacts / "ui-history-show-earlier.png"))
    measured["scroll to the top: frames"] = frames["frames"]
    measured["scroll: worst frame (ms)"] = frames["worst_frame_ms"]
    measured["scroll: total (ms)"] = frames["total_ms"]
    page.locator("#rename-panel").get_by_text("Rename or delete").click()
    page.locator("#rename-title textarea").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("Two thousand messages, renamed")
    page.keyboard.press("Enter")
    page.locator("#conversation-list label", has_text="renamed").wait_for(timeout=30_000)
    assert page.locator("#conversation-list label").count() == 100, "a rename keeps what More listed"
    print("\nmeasured:", json.dumps({k: round(v, 3) for k, v in measured.items()}))
    (artifacts / "ui-history-scale.json").write_text(json.dumps(measured, indent=1))  # speed: bench/bench_history.py
