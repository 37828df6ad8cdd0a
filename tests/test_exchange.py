"""Export and import of conversations, and search, through the real CLI on real SQLite files."""

from __future__ import annotations

import json

from app.history import STOPPED, History
from conftest import run_cli
from test_history_formats import CHATGPT

LANGUAGES = {"en": "Where is the station?", "fr": "Où est la gare ?", "zh": "火车站在哪里？", "ja": "駅はどこですか？",
             "ko": "역이 어디예요?", "ar": "أين المحطة؟", "hi": "स्टेशन कहाँ है?", "de": "Wo ist der Bahnhof?"}


def make_history(home) -> dict:
    """A history with branches (an Edit and a Retry), a tool step, a stopped reply, every script."""
    history = History(home / "nemo-chat.db")
    cid = history.create_conversation("Trip")
    question = history.add_message(cid, "user", "Plan a day in Paris")
    first = history.add_message(cid, "assistant", "Louvre", model="m.gguf", prompt_tokens=12, completion_tokens=3)
    history.branch_before(first)
    history.add_message(cid, "assistant", "Orsay", STOPPED, model="m.gguf")
    history.branch_before(question)
    history.add_message(cid, "user", "Plan a day in Lyon")
    step = {"name": "calculator", "arguments": {"expression": "6*7"}, "id": "abcDEF123", "result": 42, "error": None}
    history.add_message(cid, "tool", json.dumps(step))
    history.add_message(cid, "assistant", "```python\nprint(42)\n```")
    other = history.create_conversation("Languages")
    for text in LANGUAGES.values():
        history.add_message(other, "user", text)
        history.add_message(other, "assistant", text[::-1])
    shown = {c["title"]: [m["content"] for m in history.messages(c["id"])] for c in history.conversations()}
    history.close()
    return shown


def shape(history: History) -> dict:
    """Every conversation's title, branch shown and all its messages (content, status, role)."""
    out = {}
    for c in history.conversations():
        everything = sorted((m["role"], m["content"], m["status"]) for m in history.all_messages(c["id"]))
        out[c["title"]] = ([m["content"] for m in history.messages(c["id"])], everything)
    return out


def without_ids(data: dict) -> list:
    """An export with the file's own numbering replaced by positions (ids and export time aside)."""
    out = []
    for c in data["conversations"]:
        position = {m["id"]: i for i, m in enumerate(c["messages"])}
        messages = [{**{k: v for k, v in m.items() if k not in ("id", "parent")},
                     "parent": position.get(m["parent"])} for m in c["messages"]]
        out.append({**c, "messages": messages, "current": position[c["current"]]})
    return out


def test_export_and_import_round_trip_keeps_every_branch_and_imports_nothing_twice(tmp_path):
    home, fresh = tmp_path / "home", tmp_path / "fresh"
    home.mkdir()
    shown = make_history(home)
    exported = tmp_path / "all.json"
    assert run_cli("export", "-o", str(exported), home=home).returncode == 0
    data = json.loads(exported.read_text(encoding="utf-8"))
    assert data["format"] == "nemo-chat" and data["version"] == 1
    trip = next(c for c in data["conversations"] if c["title"] == "Trip")
    assert len(trip["messages"]) == 6 and sum(m["parent"] is None for m in trip["messages"]) == 2

    done = run_cli("import", str(exported), "--json", home=fresh)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"conversations": 2, "messages": 6 + 2 * len(LANGUAGES), "skipped": 0}
    again = run_cli("import", str(exported), "--json", home=fresh)
    assert json.loads(again.stdout)["conversations"] == 0, "a second import adds nothing"
    original, imported = History(home / "nemo-chat.db"), History(fresh / "nemo-chat.db")
    assert shape(imported) == shape(original)
    assert {t: s for t, (s, _) in shape(imported).items()} == shown
    [reply] = [m for m in imported.all_messages(imported.conversations()[-1]["id"]) if m["content"] == "Louvre"]
    assert reply["prompt_tokens"] == 12 and reply["model"] == "m.gguf"
    original.close(), imported.close()
    again_exported = json.loads(run_cli("export", home=fresh).stdout)
    assert without_ids(again_exported) == without_ids(data), "exported again: the same file"
    assert json.loads(run_cli("import", str(exported), "--json", home=home).stdout)["conversations"] == 0, \
        "a file exported from this home adds nothing here either"


def test_a_malformed_file_imports_nothing_and_says_what_is_wrong(tmp_path):
    home = tmp_path / "home"
    good = tmp_path / "chatgpt.json"
    good.write_text(json.dumps(CHATGPT), encoding="utf-8")
    bad = tmp_path / "broken.json"
    bad.write_text('{"messages": [', encoding="utf-8")
    refused = run_cli("import", str(good), str(bad), home=home)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "broken.json: not valid JSON" in refused.stderr and "Traceback" not in refused.stderr
    done = run_cli("import", str(good), "--json", home=home)
    assert json.loads(done.stdout) == {"conversations": 1, "messages": 4, "skipped": 0}, "nothing came in before"
    history = History(home / "nemo-chat.db")
    [conversation] = history.conversations()
    assert [m["content"] for m in history.messages(conversation["id"])] == ["Plan a day in Lyon", "Start at Fourvière."]
    history.close()


def test_markdown_export_reads_as_is(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    make_history(home)
    text = run_cli("export", "--format", "markdown", home=home).stdout
    assert "# Trip" in text and "```python\nprint(42)\n```" in text and "calculator" in text
    assert "Louvre" not in text, "Markdown shows the branch shown only"


def test_search_finds_messages_in_every_language_with_short_queries(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    make_history(home)
    for query in ("駅", "火车站", "역", "المحطة", "स्टेशन", "gare", "Lyon"):
        found = run_cli("search", query, "--json", home=home)
        hits = json.loads(found.stdout)["hits"]
        assert hits and query in hits[0]["snippet"], (query, found.stderr)
        assert set(hits[0]) == {"conversation_id", "message_id", "title", "snippet"}
    assert json.loads(run_cli("search", "nowhere-to-be-found", "--json", home=home).stdout)["hits"] == []


def test_queued_messages_and_parents_written_after_their_child_round_trip(tmp_path):
    """A message posted while a reply was still to come gets that reply as its parent, a larger id
    than its own; another is still queued at export. Export writes parents first and the queued
    one as the unanswered message it becomes; import orders by parent links; exported again, the
    same file."""
    from app.history import COMPLETE, INTERRUPTED, QUEUED, STREAMING
    from app.services.exchange import export_json, import_files

    history = History(tmp_path / "a.db")
    cid = history.create_conversation("Queue")
    history.add_message(cid, "user", "Tell me a story")
    early = history.add_message(cid, "user", "And another", QUEUED)  # sent before the reply's first word
    reply = history.add_message(cid, "assistant", "Once upon a time")
    history.move_to_end(early)  # its turn: after the reply, which has the larger id
    history.add_message(cid, "assistant", "There was a ship", STREAMING)  # still being written
    waiting = history.add_message(cid, "user", "Now a poem", QUEUED)
    assert history.message(early)["parent_id"] == reply > early
    data = export_json(history)
    history.close()

    [conversation] = data["conversations"]
    messages = conversation["messages"]
    assert [m["content"] for m in messages] == ["Tell me a story", "Once upon a time", "And another",
                                                "There was a ship", "Now a poem"], "parents first"
    assert [m["status"] for m in messages][-2:] == [INTERRUPTED, COMPLETE]
    assert messages[-1]["parent"] == messages[-2]["id"] and conversation["current"] == waiting
    exported = tmp_path / "a.json"
    exported.write_text(json.dumps(data), encoding="utf-8")

    fresh = History(tmp_path / "b.db")
    done = import_files(fresh, [exported])
    assert (done.conversations, done.messages, done.skipped) == (1, 5, 0), done.notes
    [imported] = fresh.conversations()
    assert [m["content"] for m in fresh.messages(imported["id"])] == [m["content"] for m in messages]
    assert without_ids(export_json(fresh)) == without_ids(data), "exported again: the same file"
    fresh.close()


def test_import_orders_our_messages_by_their_parents_not_their_place_in_the_file(tmp_path):
    shuffled = {"format": "nemo-chat", "version": 1, "conversations": [{
        "title": "Shuffled", "source": "test:shuffled", "current": "c",
        "messages": [{"id": "c", "parent": "b", "role": "user", "content": "third"},
                     {"id": "b", "parent": "a", "role": "assistant", "content": "second"},
                     {"id": "a", "parent": None, "role": "user", "content": "first"},
                     {"id": "x", "parent": "y", "role": "user", "content": "loop one"},
                     {"id": "y", "parent": "x", "role": "user", "content": "loop two"}]}]}
    path = tmp_path / "shuffled.json"
    path.write_text(json.dumps(shuffled), encoding="utf-8")
    history = History(tmp_path / "h.db")
    from app.services.exchange import import_files

    done = import_files(history, [path])
    assert (done.messages, done.skipped) == (3, 2) and all("circle" in str(note) for note in done.notes), done.notes
    [conversation] = history.conversations()
    assert [m["content"] for m in history.messages(conversation["id"])] == ["first", "second", "third"]
    history.close()
