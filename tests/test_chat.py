"""Chat service end to end: real engine, real SQLite, a real process killed mid-reply."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from app.services.chat import ChatService
from app.base.config import Settings
from app.base.errors import UserError
from app.history import COMPLETE, INTERRUPTED, STOPPED, History
from app.base.jobs import CancelToken
from app.runtime import SamplingOptions

SETTINGS = Settings(model="smollm2", n_ctx=2048, temperature=0.0, max_tokens=40)


@pytest.fixture()
def service(tmp_path, engine):
    history = History(tmp_path / "chat.db")
    yield ChatService(history, engine)
    history.close()


def test_a_reply_streams_and_is_kept_with_its_stats(service):
    updates = list(service.send(None, "Say hello in French.", SETTINGS))
    final = updates[-1]
    assert final.done and final.status == COMPLETE and len(updates) > 3
    rows = service.history.messages(final.conversation_id)
    assert [r["role"] for r in rows] == ["user", "assistant"]
    assert rows[1]["content"] == final.text and rows[1]["completion_tokens"] == final.stats.completion_tokens
    assert rows[1]["model"] and '"temperature": 0.0' in rows[1]["options"]
    assert service.history.conversation(final.conversation_id)["title"] == "Say hello in French."


def test_stop_keeps_the_partial_reply(service):
    cancel = CancelToken()
    settings = Settings(model="smollm2", n_ctx=2048, temperature=0.0, max_tokens=300)
    updates = service.send(None, "Tell me a long story about dragons.", settings, cancel)
    for count, update in enumerate(updates, 1):
        if count == 5:
            cancel.cancel()
    assert update.done and update.status == STOPPED
    saved = service.history.message(update.message_id)
    assert saved["status"] == STOPPED and saved["content"] == update.text and update.text


def test_closing_the_stream_early_saves_what_was_said(service):
    updates = service.send(None, "Count from one to fifty in words.", SETTINGS)
    for count, update in enumerate(updates, 1):
        if count == 4:
            break
    updates.close()  # what Gradio does when Stop cancels the event
    saved = service.history.message(update.message_id)
    assert saved["status"] == STOPPED and saved["content"].startswith(update.text) and update.text


def test_retry_and_edit_replace_the_tail_of_the_conversation(service):
    first = list(service.send(None, "What is 2+2?", SETTINGS))[-1]
    cid = first.conversation_id
    again = list(service.retry(cid, SETTINGS))[-1]
    rows = service.history.messages(cid)
    assert [r["role"] for r in rows] == ["user", "assistant"] and rows[1]["id"] == again.message_id
    edited = list(service.edit(cid, rows[0]["id"], "What is 3+3?", SETTINGS))[-1]
    rows = service.history.messages(cid)
    assert [r["content"] for r in rows] == ["What is 3+3?", edited.text]
    with pytest.raises(UserError):
        service.edit(cid, rows[1]["id"], "not mine", SETTINGS)


def test_a_bad_model_stores_nothing(service, tmp_path):
    with pytest.raises(UserError, match="not found"):
        service.send(None, "Hello", Settings(model=str(tmp_path / "none.gguf")))
    assert service.history.conversations() == []


KILLED_CHILD = textwrap.dedent(
    """
    import sys, time
    from app.services.chat import ChatService
    from app.base.config import Settings
    from app.history import History
    from app.engine.llama import LlamaEngine
    service = ChatService(History(sys.argv[1]), LlamaEngine())
    settings = Settings(model="smollm2", n_ctx=2048, temperature=0.0, max_tokens=2000)
    for update in service.send(None, "Write a very long essay about the history of ships. Count from 1 to 500, separated by commas.", settings):
        print(time.monotonic(), len(update.text), flush=True)  # when the reply had this much text
    """
)


def saved_reply(db) -> str:
    """The assistant row's text as the database holds it now ("" before there is one)."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT content FROM messages WHERE role='assistant'").fetchone()
    except sqlite3.OperationalError:
        return ""  # the schema is still being created
    return row[0] if row else ""


def test_a_killed_process_loses_at_most_a_second_of_the_reply(tmp_path, monkeypatch):
    """The child reports each update of its reply (its own clock, the text's length); killed once the
    database holds 80 characters, what the database kept was written at most a second before the
    child's last update, by the child's own clock."""
    from app import history as history_module

    monkeypatch.setattr(history_module, "STALE_STREAMING_S", 0.0)  # the killed writer will never write again
    db = tmp_path / "killed.db"
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    updates, saved = [], ""
    try:
        for line in child.stdout:  # each update of the reply, as it happens
            at, length = line.split()
            updates.append((float(at), int(length)))
            saved = saved_reply(db)
            if len(saved) >= 80:
                break
        assert len(saved) >= 80, "the streaming reply should reach the database while it grows"
        os.kill(child.pid, signal.SIGKILL)
        updates += [(float(at), int(length)) for at, length in (line.split() for line in child.stdout)]
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    history = History(db)
    [conversation] = history.conversations()
    user, reply = history.messages(conversation["id"])
    assert user["content"].startswith("Write a very long essay")
    assert reply["status"] == INTERRUPTED and reply["content"].startswith(saved)
    kept_at = next(at for at, length in updates if length >= len(reply["content"]))
    lost_s = updates[-1][0] - kept_at
    assert lost_s <= 1.0, f"the text written in the last {lost_s:.2f} s before the kill was lost"
    assert history.integrity_ok()
    history.close()


class BreakingEngine:
    """The real engine, whose stream breaks with an unexpected error after a few tokens."""

    def __init__(self, engine, after: int) -> None:
        self.engine, self.after = engine, after

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def complete(self, prompt_ids, sampling, cancel=None, progress=None, decoder=None):
        completion = self.engine.complete(prompt_ids, sampling, cancel, decoder=decoder)
        after = self.after

        class Breaking:
            stats = completion.stats

            def __iter__(self):
                for n, delta in enumerate(completion):
                    if n == after:
                        raise RuntimeError("the GPU fell off the bus")
                    yield delta

        return Breaking()


def test_an_unexpected_error_keeps_the_partial_reply_marks_it_failed_and_logs_it(tmp_path, engine, home):
    history = History(tmp_path / "chat.db")
    service = ChatService(history, BreakingEngine(engine, after=12))
    updates = service.send(None, "Tell me a long story about dragons.", Settings(model="smollm2", n_ctx=2048,
                                                                                temperature=0.0, max_tokens=100))
    seen = []
    with pytest.raises(UserError) as failed:
        for update in updates:
            seen.append(update.text)
    message = str(failed.value)
    assert "RuntimeError: the GPU fell off the bus" in message and "\n" not in message
    [conversation] = history.conversations()
    user, reply = history.messages(conversation["id"])
    assert reply["status"] == "error" and reply["content"] and reply["content"] == seen[-1], "the partial text is kept"
    log = (home / "logs" / "nemo-chat.log").read_text(encoding="utf-8")
    assert "Traceback" in log and "the GPU fell off the bus" in log
    history.close()


def test_deleting_a_conversation_while_its_reply_streams_ends_the_reply_in_one_line(service):
    updates = service.send(None, "Tell me a long story about dragons.", Settings(
        model="smollm2", n_ctx=2048, temperature=0.0, max_tokens=200))
    first = next(u for u in updates if u.message_id is not None)
    service.history.delete_conversation(first.conversation_id)
    with pytest.raises(UserError, match="the conversation was deleted while this reply was written"):
        for _ in updates:
            pass
    assert service.history.conversations() == []
    assert service.history.integrity_ok()
    after = list(service.send(None, "Say hello.", SETTINGS))[-1]
    assert after.status == COMPLETE and after.text, "the service keeps working"


# -- messages sent while a reply runs, Stop, titles ------------------------------------------------
from app.base.jobs import WAITING, JobRegistry  # noqa: E402
from app.history import QUEUED, TITLE_BY_DOCUMENT, TITLE_BY_MESSAGE, TITLE_BY_MODEL  # noqa: E402
from app.services.chat_queue import TabReplies  # noqa: E402
from app.services.titles import clean_title, retitle, title_prompt, wants_title  # noqa: E402

LONG = Settings(model="smollm2", n_ctx=2048, temperature=0.0, max_tokens=400)


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def roles_and_statuses(history, cid):
    return [(m["role"], m["status"]) for m in history.messages(cid)]


def test_a_message_posted_while_a_reply_streams_is_answered_after_it(service):
    replies = TabReplies(service, JobRegistry())
    cid, first = service.post(None, "Count from 1 to 20, separated by commas.", SETTINGS)
    job = replies.answer("tab", first, SETTINGS)
    wait_until(lambda: job.latest is not None and job.latest.text)
    _, second = service.post(cid, "Say hello.", SETTINGS)
    assert service.history.message(second)["status"] == QUEUED, "kept at once, waiting for its reply"
    assert replies.answer("tab", second, SETTINGS) is None, "the running job answers it next"
    job.result(timeout=120)
    rows = service.history.messages(cid)
    assert [(r["role"], r["status"]) for r in rows] == [("user", "complete"), ("assistant", "complete")] * 2
    assert rows[2]["content"] == "Say hello." and rows[3]["content"].strip()
    assert rows[1]["id"] < rows[2]["id"], "the waiting message comes after the reply written meanwhile"


def queued_behind_a_long_reply(service, *texts: str):
    """A tab's long reply streaming, with `texts` posted behind it: (replies, job, conversation, first
    message id, the queued ids)."""
    replies = TabReplies(service, JobRegistry())
    cid, first = service.post(None, "Tell me a long story about dragons.", LONG)
    job = replies.answer("tab", first, LONG)
    wait_until(lambda: job.latest is not None and job.latest.text)
    queued = [service.post(cid, text, SETTINGS)[1] for text in texts]
    assert all(replies.answer("tab", message_id, SETTINGS) is None for message_id in queued), "answered next"
    return replies, job, cid, first, queued


def test_stop_ends_only_the_reply_being_written_and_the_queued_messages_are_answered_in_order(service):
    replies, job, cid, _, _ = queued_behind_a_long_reply(service, "Say hello.", "Say goodbye.")
    assert replies.stop("tab")
    job.result(timeout=180)
    rows = service.history.messages(cid)
    assert [(r["role"], r["status"]) for r in rows] == [
        ("user", "complete"), ("assistant", "stopped"), ("user", "complete"), ("assistant", "complete"),
        ("user", "complete"), ("assistant", "complete")]
    assert [rows[2]["content"], rows[4]["content"]] == ["Say hello.", "Say goodbye."]
    assert rows[3]["content"].strip() and rows[5]["content"].strip()
    assert not replies.stop("tab"), "nothing is being answered any more"


def test_a_queued_message_can_be_taken_back_until_its_reply_begins(service):
    replies, job, cid, first, (second, _) = queued_behind_a_long_reply(service, "Say hello.", "Say goodbye.")
    assert not replies.take_back("other tab", second), "only the tab that sent it takes it back"
    assert not replies.take_back("tab", first), "its reply is being written"
    assert replies.take_back("tab", second)
    assert second not in [m["id"] for m in service.history.all_messages(cid)], "deleted, never answered"
    replies.stop("tab")
    job.result(timeout=180)
    rows = service.history.messages(cid)
    assert [r["role"] for r in rows] == ["user", "assistant", "user", "assistant"] and rows[2]["content"] == "Say goodbye."


def test_a_closed_tab_leaves_its_queued_messages_stored_and_unanswered(service):
    replies, job, cid, _, _ = queued_behind_a_long_reply(service, "And one about knights.")
    replies.close("tab")
    job.result(timeout=60)
    rows = service.history.messages(cid)
    assert [(r["role"], r["status"]) for r in rows] == [("user", "complete"), ("assistant", "stopped"),
                                                        ("user", "complete")]
    assert rows[2]["content"] == "And one about knights."
    _, third = service.post(cid, "Say hello.", SETTINGS)
    again = replies.answer("tab", third, SETTINGS)
    assert again is not None and again is not job, "a message sent later starts a new reply"
    again.result(timeout=120)
    assert roles_and_statuses(service.history, cid)[-2:] == [("user", "complete"), ("assistant", "complete")]


def test_a_refusal_is_raised_and_never_stored_as_the_reply(service, monkeypatch):
    """A request refused while it waits (the model held by a stream left open) ends in one line;
    the conversation ends in the unanswered message, with no reply row."""
    monkeypatch.setattr(service.engine._turns, "silent_s", 0.3)
    service.ensure_model(SETTINGS)
    holding = iter(service.engine.complete(service.engine.tokenize("Once upon a time"), SamplingOptions(max_tokens=8)))
    next(holding)
    try:
        with pytest.raises(UserError, match="the model is busy"):
            list(service.send(None, "What is the capital of France?", SETTINGS))
    finally:
        holding.close()
    [conversation] = service.history.conversations()
    assert roles_and_statuses(service.history, conversation["id"]) == [("user", "complete")]


def test_a_second_tab_waits_its_turn_learns_how_many_are_ahead_and_can_stop_waiting(service):
    replies = TabReplies(service, JobRegistry())
    _, first = service.post(None, "Tell me a long story about dragons.", LONG)
    running = replies.answer("tab A", first, LONG)
    wait_until(lambda: running.latest is not None and running.latest.text)
    other, second = service.post(None, "What is the capital of France?", LONG)
    waiting = replies.answer("tab B", second, LONG)
    wait_until(lambda: waiting.progress is not None and waiting.progress.what == WAITING)
    assert waiting.progress.ahead == 1
    replies.stop("tab B")
    waiting.result(timeout=30)
    assert waiting.latest.done and waiting.latest.status == STOPPED and waiting.latest.message_id is None
    assert waiting.latest.stats.completion_tokens == 0
    assert roles_and_statuses(service.history, other) == [("user", "complete")], "no empty reply is kept"
    assert not running.finished, "tab A's reply runs on"
    replies.stop("tab A")
    running.result(timeout=30)


def test_stop_before_the_first_token_keeps_no_reply(service):
    cancel = CancelToken()
    cancel.cancel()
    *_, last = service.send(None, "Hello there.", SETTINGS, cancel)
    assert last.done and last.status == STOPPED and last.message_id is None and not last.text
    assert roles_and_statuses(service.history, last.conversation_id) == [("user", "complete")]


def test_editing_the_first_message_renews_the_title_unless_the_user_chose_one(service):
    first = list(service.send(None, "What is 2+2?", SETTINGS))[-1]
    cid = first.conversation_id
    user = service.history.messages(cid)[0]
    list(service.edit(cid, user["id"], "What is the capital of Italy?", SETTINGS))
    conversation = service.history.conversation(cid)
    assert conversation["title"] == "What is the capital of Italy?" and conversation["title_by"] == TITLE_BY_MESSAGE
    service.history.rename(cid, "Geography")
    user = service.history.messages(cid)[0]
    list(service.edit(cid, user["id"], "What is the capital of Spain?", SETTINGS))
    assert service.history.conversation(cid)["title"] == "Geography"


def test_a_conversation_started_from_a_document_is_titled_by_the_document(service, tmp_path):
    note = tmp_path / "report.md"
    note.write_text("# Jahresbericht der Stadtwerke Lindenau\n\nDie Stadtwerke lieferten 2023 Strom und Wasser.\n",
                    encoding="utf-8")
    cid, _ = service.attach(None, str(note), "overview", SETTINGS)
    conversation = service.history.conversation(cid)
    assert conversation["title"] == "Jahresbericht der Stadtwerke Lindenau"
    assert conversation["title_by"] == TITLE_BY_DOCUMENT and not wants_title(service.history, cid)


def test_the_model_titles_a_new_conversation_briefly_and_keeps_a_title_the_user_chose(service):
    question = "Quelle est la capitale de la France et pourquoi est-elle célèbre ?"
    assert "French" in title_prompt(question, "Paris.")[0]["content"], "the title is asked for in the talk's language"
    cid = list(service.send(None, question, SETTINGS))[-1].conversation_id
    assert wants_title(service.history, cid)
    started = time.monotonic()
    title = retitle(service.history, service.engine, cid)
    assert time.monotonic() - started < 60
    conversation = service.history.conversation(cid)
    assert title and "\n" not in title and len(title) <= 60
    assert conversation["title"] == title and conversation["title_by"] == TITLE_BY_MODEL
    assert not wants_title(service.history, cid), "titled once"

    other = list(service.send(None, "Name three colours.", SETTINGS))[-1].conversation_id
    stopped = CancelToken()
    stopped.cancel()
    assert retitle(service.history, service.engine, other, stopped) == ""
    service.history.rename(other, "Colours")
    assert not wants_title(service.history, other) and service.history.conversation(other)["title"] == "Colours"


@pytest.mark.parametrize("written, title", [
    ('Title: "Paris, the capital"\nMore text', "Paris, the capital"),
    ("**La capitale de la France**.", "La capitale de la France"),
    ("\n\n# Farben\n", "Farben"),
    ("x" * 80, "x" * 59 + "…"),
])
def test_what_the_model_writes_is_cleaned_into_one_short_line(written, title):
    assert clean_title(written) == title
