"""Chaos: real processes killed mid-reply, a full disk, two writers on one home, two browser tabs.

Everything is real: `python -m app` children on the real SmolLM2 + llama.cpp, the real SQLite file,
Debian's headless Chromium driven by Playwright, messages typed with the keyboard."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, free_port

KILLS = 20
DB_NAME = "nemo-chat.db"


def write_settings(home: Path, **values) -> None:
    home.mkdir(parents=True, exist_ok=True)
    settings = {"model": "smollm2", "n_ctx": 2048, "temperature": 0.7, "max_tokens": 1500, **values}
    (home / "settings.json").write_text(json.dumps(settings), encoding="utf-8")


WARM_START = """
import sys
import llama_cpp, app.ui, app.faces.cli  # the slow imports only: nothing of the app has run yet
from app.faces.cli import main
if sys.stdin.readline().strip() == "go":
    sys.exit(main(sys.argv[1:]))
"""


class UiServer:
    """`python -m app --home HOME ui` in a child process. With `warm`, the child imports the app's
    modules first and then waits for start(): every line of the app's own start (settings, Services,
    opening the database, marking interrupted replies, the model, the server) still runs at start(),
    but the restart loop does not pay ~4 s of Python imports each time."""

    def __init__(self, home: Path, warm: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.warm = warm
        argv = ["--home", str(home), "ui", "--no-browser", "--port", str(self.port), "--model", "smollm2"]
        self.log = open(home.parent / f"ui-{self.port}.log", "w+", encoding="utf-8")  # noqa: SIM115
        env = {**os.environ, "NEMO_CHAT_HOME": str(home)}
        self.child = subprocess.Popen([sys.executable, *(["-c", WARM_START] if warm else ["-m", "app"]), *argv],
                                      stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT,
                                      text=True, env=env)

    def start(self) -> str:
        if self.warm:
            self.child.stdin.write("go\n")
            self.child.stdin.flush()
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
                return self.url
            except OSError:
                if self.child.poll() is not None:
                    self.log.seek(0)
                    raise AssertionError(f"the UI server died at start: {self.log.read()[-2000:]}")
                assert time.monotonic() < deadline, "the UI server did not answer within 90 s"
                time.sleep(0.05)

    def kill(self) -> int:
        if self.child.poll() is None:
            os.kill(self.child.pid, signal.SIGKILL)
        code = self.child.wait(timeout=30)
        self.child.stdin.close()
        self.log.close()
        return code


@contextmanager
def ui_server(home: Path):
    """A UI server for the length of the block; yields (process, url) once it answers HTTP."""
    server = UiServer(home)
    try:
        yield server.child, server.start()
    finally:
        server.kill()


def query(db: Path, sql: str, *args) -> list[tuple]:
    """Read the app's database from the outside, like another process would."""
    for _ in range(50):
        try:
            conn = sqlite3.connect(db, timeout=10)
            try:
                return conn.execute(sql, args).fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:  # the schema is still being created by the app
            last = exc
            time.sleep(0.1)
    raise last


def wait_for(predicate, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def first_words(text: str, n: int = 3) -> str:
    """The first words of a reply, Markdown marks dropped (the page renders lists and emphasis)."""
    words = re.findall(r"[^\W\d_]{2,}", text)
    return " ".join(words[:n]) if len(words) >= n else " ".join(words)


def integrity(db: Path) -> str:
    return query(db, "PRAGMA integrity_check")[0][0]


def page_is_live(page) -> None:
    page.wait_for_function("() => { const line = document.querySelector('#model-line');"
                           " return line && line.innerText.trim().length > 0; }", timeout=60_000)


def type_and_send(page, text: str) -> None:
    """Type into the message box with the keyboard, then press Enter, as a person does (once the
    page is live: the model line is written by the page's load event)."""
    page_is_live(page)
    box = page.locator("#message-box textarea")
    box.click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    # the page took the message when its box is empty again: a person sees that before typing the next
    # (typed sooner, the next message would be added to this one in the box)
    page.wait_for_function("() => document.querySelector('#message-box textarea').value === ''", timeout=60_000)


def reply_done(page) -> None:
    page.wait_for_function("() => { const s = document.querySelector('#reply-stats');"
                           " return s && s.innerText.includes('tok/s') && !s.innerText.includes('…'); }",
                           timeout=240_000)


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_twenty_kills_mid_reply_lose_no_conversation_and_mark_every_reply_interrupted(tmp_path, browser,
                                                                                        monkeypatch):
    """The UI server SIGKILLed 20 times in a row while a reply streams, restarted each time and used
    again from a reloaded Chromium page: all 20 questions and their partial replies are stored, every
    reopen marks the earlier killed replies 'interrupted', and the database stays intact."""
    from app import history as history_module
    from app.history import INTERRUPTED, STALE_STREAMING_S, STREAMING, History

    home = tmp_path / "home"
    db = home / DB_NAME
    write_settings(home, max_tokens=1500)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    kill_times: list[float] = []
    last_start = 0.0
    server = UiServer(home, warm=True)
    spawned = [server]
    try:
        for n in range(1, KILLS + 1):
            question = f"Question {n}: write a long story about lighthouse number {n}."
            last_start = time.monotonic()  # before the start: the reopen marks stale replies as it starts
            url = server.start()
            page.goto(url)  # the page opened again on the restarted server
            type_and_send(page, question)
            following = UiServer(home, warm=True) if n < KILLS else None  # imports while the reply streams
            spawned.append(following)
            wait_for(lambda question=question: query(
                db, "SELECT 1 FROM messages m JOIN messages u ON u.conversation_id = m.conversation_id"
                    " WHERE m.role='assistant' AND m.status=? AND length(m.content) > 0 AND u.content=?",
                STREAMING, question), 60, f"reply {n} to reach the database while it streams")
            assert server.kill() == -signal.SIGKILL, "killed in the middle of its reply"
            kill_times.append(time.monotonic())
            server = following
    finally:
        for child in spawned:
            if child is not None and not child.log.closed:
                child.kill()

    users = query(db, "SELECT content FROM messages WHERE role='user' ORDER BY id")
    assert [u for (u,) in users] == [f"Question {n}: write a long story about lighthouse number {n}."
                                     for n in range(1, KILLS + 1)]
    replies = query(db, "SELECT content, status FROM messages WHERE role='assistant' ORDER BY id")
    assert len(replies) == KILLS and all(content.strip() for content, _ in replies), "every partial reply kept"
    # The restarts themselves are reopens: a reply killed more than STALE_STREAMING_S before the
    # last start was marked by that start (its row was last written before its kill).
    marked = [status for (_, status), killed in zip(replies, kill_times)
              if last_start - killed > STALE_STREAMING_S + 0.5]
    assert len(marked) >= KILLS - 5, "a cycle takes well over 2 s, so most kills precede the last start by 10 s"
    assert marked == [INTERRUPTED] * len(marked), replies
    assert query(db, "SELECT count(*) FROM conversations")[0][0] == KILLS
    assert integrity(db) == "ok"

    # The app reopened once more after the last kill; its writer is dead, so no grace period is due.
    monkeypatch.setattr(history_module, "STALE_STREAMING_S", 0.0)
    history = History(db)
    try:
        conversations = history.conversations()
        assert len(conversations) == KILLS
        for conversation in conversations:
            user, reply = history.messages(conversation["id"])
            assert user["role"] == "user" and reply["status"] == INTERRUPTED and reply["content"].strip()
        assert history.integrity_ok()
    finally:
        history.close()


def test_a_full_disk_while_a_reply_streams_ends_in_one_line_and_keeps_the_database(tmp_path):
    """The CLI writing a reply into a file-size quota (RLIMIT_FSIZE, as a full disk: writes fail with
    EFBIG) exits non-zero with one line on stderr and no traceback; the database is not corrupted and
    the earlier conversation is intact."""
    home = tmp_path / "home"
    db = home / DB_NAME
    write_settings(home)
    env = {**os.environ, "NEMO_CHAT_HOME": str(home)}
    env.pop("NEMO_CHAT_DEBUG", None)
    base = [sys.executable, "-m", "app", "--home", str(home), "chat"]
    first = subprocess.run([*base, "Say hello.", "--model", "smollm2", "--max-tokens", "20"],
                           capture_output=True, text=True, env=env, timeout=180, check=False)
    assert first.returncode == 0, first.stderr
    before = query(db, "SELECT role, content, status FROM messages ORDER BY id")
    assert len(before) == 2 and before[1][1].strip()
    limit = os.path.getsize(db) + 16 * 1024  # just above the database: the reply's growth hits it

    def quota():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the quota fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run([*base, "Write a very long essay about the history of ships.", "--model", "smollm2",
                           "--max-tokens", "400", "--temperature", "0.7"],
                          capture_output=True, text=True, env=env, timeout=240, preexec_fn=quota, check=False)
    assert full.returncode != 0, f"a reply that could not be saved must not exit 0: {full.stdout[-300:]!r}"
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in full.stderr, full.stderr
    assert lines[0].startswith("nemo-chat: ") and "is the disk full?" in lines[0] and full.returncode == 1, lines

    assert integrity(db) == "ok"
    after = query(db, "SELECT role, content, status FROM messages ORDER BY id")
    assert after[:2] == before, "the earlier conversation is intact"
    assert all(status != "complete" for role, _, status in after[2:] if role == "assistant"), \
        "a reply that could not be saved is not marked complete"
    again = subprocess.run([*base, "Say hi.", "--model", "smollm2", "--max-tokens", "10", "--json"],
                           capture_output=True, text=True, env=env, timeout=180, check=False)
    assert again.returncode == 0, again.stderr  # the app opens the database again and keeps working
    assert json.loads(again.stdout)["status"] == "complete"
    assert integrity(db) == "ok"


def test_the_cli_and_the_ui_write_to_one_home_at_once(tmp_path, browser):
    """Two `chat` commands run against the home while the UI streams a reply in Chromium: every
    conversation is stored, the CLI's opening of the database does not mark the UI's live reply as
    interrupted, the UI's reply ends complete and the database is intact."""
    home = tmp_path / "home"
    db = home / DB_NAME
    write_settings(home, max_tokens=200)
    env = {**os.environ, "NEMO_CHAT_HOME": str(home)}
    question = "Write a story about a lighthouse keeper and the sea."
    with ui_server(home) as (_, url):
        page = browser.new_page()
        page.goto(url)
        type_and_send(page, question)
        wait_for(lambda: query(db, "SELECT 1 FROM messages WHERE role='assistant' AND status='streaming'"
                                   " AND length(content) > 0"), 60, "the UI's reply to stream")
        clis = [subprocess.Popen([sys.executable, "-m", "app", "--home", str(home), "chat", f"Say hello {n}.",
                                  "--model", "smollm2", "--max-tokens", "16", "--temperature", "0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for n in (1, 2)]
        outcomes = [cli.communicate(timeout=180) for cli in clis]
        assert [cli.returncode for cli in clis] == [0, 0], [err for _, err in outcomes]
        reply_done(page)
        assert "stopped" not in page.locator("#reply-stats").inner_text()
        shown = page.locator("#chatbot .message.bot").last.inner_text()

    rows = query(db, "SELECT m.conversation_id, m.role, m.content, m.status FROM messages m ORDER BY m.id")
    asked = {r[0]: r[2] for r in reversed(rows) if r[1] == "user"}  # conversation -> its first question
    ui_reply = [r for r in rows if r[1] == "assistant" and asked[r[0]] == question]
    assert len(ui_reply) == 1 and ui_reply[0][3] == "complete", ui_reply
    assert first_words(ui_reply[0][2]) in first_words(shown, 10**6), (ui_reply[0][2], shown)
    assert {r[2] for r in rows if r[1] == "user"} == {question, "Say hello 1.", "Say hello 2."}
    cli_replies = [r for r in rows if r[1] == "assistant" and asked[r[0]].startswith("Say hello")]
    assert len(cli_replies) == 2 and all(r[3] == "complete" and r[2].strip() for r in cli_replies)
    assert query(db, "SELECT count(*) FROM conversations")[0][0] == 3
    assert integrity(db) == "ok"


def test_two_browser_tabs_chatting_at_once_each_get_their_own_reply(tmp_path, browser):
    """Two tabs (two Gradio sessions) send typed messages at nearly the same time; the model serves
    one after the other, and both questions and both replies are stored and shown in their own tab."""
    home = tmp_path / "home"
    db = home / DB_NAME
    write_settings(home, max_tokens=60)
    questions = ["Name three colours of the sea.", "Name three kinds of ships."]
    with ui_server(home) as (_, url):
        context = browser.new_context()
        tabs = [context.new_page(), context.new_page()]
        for tab, text in zip(tabs, questions):
            tab.goto(url)
            page_is_live(tab)
            box = tab.locator("#message-box textarea")
            box.click()
            tab.keyboard.type(text)
        for tab in tabs:  # both press Enter at nearly the same time
            tab.locator("#message-box textarea").press("Enter")
        for tab in tabs:
            reply_done(tab)
        shown = [tab.locator("#chatbot").inner_text() for tab in tabs]
        bots = [tab.locator("#chatbot .message.bot").all_inner_texts() for tab in tabs]

    rows = query(db, "SELECT m.conversation_id, m.role, m.content, m.status FROM messages m ORDER BY m.id")
    for tab_text, tab_bots, question, other in zip(shown, bots, questions, reversed(questions)):
        assert question in tab_text and other not in tab_text, tab_text
        assert len(tab_bots) == 1 and tab_bots[0].strip(), tab_bots
        [cid] = [r[0] for r in rows if r[1] == "user" and r[2] == question]  # by its question: the model retitles it
        stored = [r for r in rows if r[0] == cid]
        assert [r[1] for r in stored] == ["user", "assistant"], rows
        assert stored[1][3] == "complete" and stored[1][2].strip()
        assert first_words(stored[1][2]) in first_words(tab_bots[0], 10**6), (stored[1][2], tab_bots[0])
    assert integrity(db) == "ok"


# -- nothing typed is lost: Stop with messages queued, a tab waiting behind a long reply, backups -----
QUEUED_WAIT = "waiting for the model ({} ahead)"
BOX = "#message-box textarea"


def conversation_rows(db: Path, question: str) -> list[tuple]:
    """(id, role, content, status, created_at, updated_at) of the conversation that `question` started."""
    found = query(db, "SELECT conversation_id FROM messages WHERE role='user' AND content=? ORDER BY id", question)
    if not found:
        return []
    return query(db, "SELECT id, role, content, status, created_at, updated_at FROM messages"
                     " WHERE conversation_id=? ORDER BY id", found[0][0])


def test_escape_with_messages_queued_stops_only_the_reply_and_the_queued_message_is_answered(tmp_path, browser, artifacts):
    """Two messages typed while a reply streams wait behind it, each with its ✕; one is taken back.
    Escape stops the reply being written, and the message still queued is answered next; after a
    reload the conversation shows the stopped reply and the answer."""
    home = tmp_path / "home"
    db = home / DB_NAME
    write_settings(home, max_tokens=1500, temperature=0.0, parallel=1)  # greedy: counting runs until Escape,
    story = "Count from 1 to 1000, separated by commas."  # and the answer after it is short
    with ui_server(home) as (_, url):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        type_and_send(page, story)
        wait_for(lambda: [r for r in conversation_rows(db, story) if r[1] == "assistant" and r[2].strip()],
                 120, "the reply to stream")
        type_and_send(page, "Say hello.")
        type_and_send(page, "Say goodbye.")
        page.locator("#chatbot", has_text=QUEUED_WAIT.format(2)).wait_for(timeout=30_000)
        assert page.locator("#chatbot button.take-back").count() == 2, "each queued message has its ✕"
        page.locator("#chatbot button.take-back").first.click()
        page.wait_for_function("() => !document.querySelector('#chatbot').innerText.includes('Say hello.')",
                               timeout=30_000)
        page.screenshot(path=str(artifacts / "chaos-queued.png"))
        assert page.locator("#chatbot button.take-back").count() == 1

        page.locator(BOX).focus()
        page.keyboard.press("Escape")
        page.locator("#chatbot .message.bot", has_text="■ stopped").wait_for(timeout=30_000)
        answered = wait_for(lambda: (rows := conversation_rows(db, story)) and len(rows) == 4
                            and rows[3][3] == "complete" and rows, 240, "the queued message to be answered")
        assert [(r[1], r[3]) for r in answered] == [("user", "complete"), ("assistant", "stopped"),
                                                   ("user", "complete"), ("assistant", "complete")]
        assert answered[2][2] == "Say goodbye." and answered[3][2].strip()
        assert "Say hello." not in [r[0] for r in query(db, "SELECT content FROM messages")], "taken back"
        page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=60_000)
        page.screenshot(path=str(artifacts / "chaos-answered.png"))

        page.reload()
        page.locator("#conversation-list label").first.click()
        page.locator("#chatbot .message.bot", has_text="■ stopped").wait_for(timeout=30_000)
        bots = page.locator("#chatbot .message.bot").all_inner_texts()
        assert len(bots) == 2 and first_words(answered[3][2]) in first_words(bots[1], 10**6), bots
    assert integrity(db) == "ok"


def test_a_second_tab_waits_behind_a_long_reply_with_no_time_limit_and_gets_its_answer(tmp_path, browser, artifacts):
    """A second tab sends while the first tab's reply runs; it shows its place for as long as that
    reply runs, and gets its answer once it has ended.

    The wait has no time limit while the reply ahead is alive: the one limit is for a holder that
    has stopped asking for tokens (a stream left open), `silent_holder_s`, 300 s by default, which
    the test sets to 3 s. Rather than a reply of minutes (the issue's "at least 2 minutes": on this
    shared machine that is a budget, not a proof), the first reply is made long relative to that
    limit, whatever the machine's speed: greedy counting to 1000 with room for 1500 tokens. The
    second tab must still be waiting, not refused, after three times the limit; then Escape ends
    the first reply (on a fast machine it would run on for many more seconds) and the second tab
    is answered. The stored times show the wait outlasted the limit, and no "busy" reply is kept."""
    home = tmp_path / "home"
    db = home / DB_NAME
    limit = 3
    write_settings(home, max_tokens=1500, temperature=0.0, parallel=1, silent_holder_s=limit)
    counting, question = "Count from 1 to 1000, separated by commas.", "What is 2+2?"  # greedy: a short answer
    with ui_server(home) as (_, url):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        first, second = context.new_page(), context.new_page()
        for tab in (first, second):
            tab.goto(url)
            page_is_live(tab)
        type_and_send(first, counting)
        wait_for(lambda: [r for r in conversation_rows(db, counting) if r[1] == "assistant" and r[2].strip()],
                 120, "the first reply to stream")
        type_and_send(second, question)
        second.locator("#chatbot", has_text=QUEUED_WAIT.format(1)).wait_for(timeout=30_000)
        waiting_since = time.monotonic()
        assert second.locator("#stop").is_enabled(), "the wait can be stopped"
        second.screenshot(path=str(artifacts / "chaos-second-tab-waiting.png"))
        while time.monotonic() - waiting_since < 3 * limit:  # the wait outlasts the limit: still in line
            assert second.locator("#chatbot", has_text=QUEUED_WAIT.format(1)).count() == 1
            assert "busy" not in second.locator("body").inner_text()
            time.sleep(0.5)
        assert conversation_rows(db, counting)[-1][3] == "streaming", "the first reply is still being written"
        first.locator(BOX).focus()
        first.keyboard.press("Escape")
        reply_done(second)
        shown = second.locator("#chatbot .message.bot").all_inner_texts()

    long_reply = conversation_rows(db, counting)[1]
    asked, answer = conversation_rows(db, question)
    assert long_reply[3] == "stopped" and answer[1] == "assistant" and answer[3] == "complete", answer
    assert answer[4] >= long_reply[5] - 1.0, "answered once the first reply had ended"
    assert answer[4] - asked[4] > 3 * limit, "the wait lasted well past the silence limit"
    assert not query(db, "SELECT 1 FROM messages WHERE content LIKE '%busy%'"), "no refusal stored as a reply"
    assert len(shown) == 1 and first_words(answer[2]) in first_words(shown[0], 10**6), shown
    assert integrity(db) == "ok"


def test_export_import_export_of_a_history_with_a_queued_message_gives_the_same_file(tmp_path, browser, artifacts):
    """A history with branches, a tool step and a stopped reply (written beforehand) and, in
    Chromium, a reply streaming with a typed message queued behind it: "Export all" downloads it;
    the file dropped on a fresh home's import is taken whole, and exported again gives the same
    file (ids and export time aside). The imported conversation ends in the queued message, which
    the Retry of its note answers."""
    from test_exchange import make_history, without_ids
    from test_ui_history import drop_on_import, exported_text

    home, fresh = tmp_path / "home", tmp_path / "fresh"
    home.mkdir()
    make_history(home)
    write_settings(home, max_tokens=1500, temperature=0.0, parallel=1)  # greedy counting: long, the export runs
    write_settings(fresh, max_tokens=40, temperature=0.0)
    story, queued = "Count from 1 to 1000, separated by commas.", "What is 2+2?"
    with ui_server(home) as (_, url):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        type_and_send(page, story)
        wait_for(lambda: [r for r in conversation_rows(home / DB_NAME, story) if r[1] == "assistant"],
                 120, "the reply to stream")
        type_and_send(page, queued)
        page.locator("#chatbot", has_text=QUEUED_WAIT.format(1)).wait_for(timeout=30_000)
        page.locator("#exchange-panel").get_by_text("Export and import").click()
        first = json.loads(exported_text(page, "JSON", "Export all", "nemo-chat history.json"))
    live = next(c for c in first["conversations"] if c["messages"][0]["content"] == story)
    assert [m["content"] for m in live["messages"]][::2] == [story, queued], "the queued message is in the file"
    assert live["messages"][1]["status"] == "interrupted" and live["messages"][2]["parent"] == live["messages"][1]["id"]
    assert live["current"] == live["messages"][2]["id"], "it ends the branch shown"
    assert {m["role"] for c in first["conversations"] for m in c["messages"]} >= {"tool"}
    assert {m["status"] for c in first["conversations"] for m in c["messages"]} >= {"stopped"}
    assert any(sum(m["parent"] is None for m in c["messages"]) > 1 for c in first["conversations"]), "branches"

    with ui_server(fresh) as (_, url):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page_is_live(page)
        page.locator("#exchange-panel").get_by_text("Export and import").click()
        drop_on_import(page, "backup.json", json.dumps(first).encode())
        total = sum(len(c["messages"]) for c in first["conversations"])
        page.locator("#exchange-status", has_text=f"{len(first['conversations'])} conversations, {total} messages"
                                                  " imported, 0 skipped").wait_for(timeout=60_000)
        again = json.loads(exported_text(page, "JSON", "Export all", "nemo-chat history.json"))
        assert without_ids(again) == without_ids(first), "exported again: the same file"

        page.locator("#conversation-list label", has_text="Count from 1 to 1000").click()
        note = page.locator("#chatbot .message.bot", has_text="No reply yet")
        note.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / "chaos-imported-unanswered.png"))
        page.locator("#chatbot").get_by_role("button", name="Retry").last.click()
        wait_for(lambda: (rows := conversation_rows(fresh / DB_NAME, queued)) and rows[-1][1] == "assistant"
                 and rows[-1][3] == "complete", 180, "the queued message to be answered after Retry")
        assert conversation_rows(fresh / DB_NAME, queued)[-2][2] == queued
    assert integrity(fresh / DB_NAME) == "ok"
