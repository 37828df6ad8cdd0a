"""The SQLite store on a real file: migrations, WAL, CRUD, search in every script."""

from __future__ import annotations

import sqlite3

import pytest

from app.base.errors import UserError
from app.history import (COMPLETE, INTERRUPTED, MIGRATIONS, QUEUED, STALE_STREAMING_S, STREAMING, TITLE_BY_MESSAGE,
                         TITLE_BY_USER, TRASH_KEEP_S, History)


@pytest.fixture()
def history(tmp_path):
    store = History(tmp_path / "chat.db")
    yield store
    store.close()


def test_migrations_are_named_recorded_and_applied_once(tmp_path):
    History(tmp_path / "a.db").close()
    conn = sqlite3.connect(tmp_path / "a.db")
    names = [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [step.__name__ for step in MIGRATIONS] == [
        "m001_conversations", "m002_search", "m003_documents", "m004_translations", "m005_chunk_search",
        "m006_trash_and_title_source", "m007_branches", "m008_readable_tool_steps",
        "m009_conversation_summaries", "m010_conversation_settings"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    recorded = conn.execute("SELECT * FROM _migrations ORDER BY name").fetchall()
    conn.close()
    History(tmp_path / "a.db").close()  # reopening applies nothing twice
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("SELECT * FROM _migrations ORDER BY name").fetchall() == recorded, "nothing applied again"


def test_conversations_and_messages_round_trip(history):
    cid = history.create_conversation("First")
    history.add_message(cid, "user", "Hello")
    reply = history.add_message(cid, "assistant", "", STREAMING, model="m", options={"temperature": 0.3})
    history.update_message(reply, "Hi there", COMPLETE, prompt_tokens=12, cached_tokens=3,
                           completion_tokens=2, ttft_s=0.1, tokens_per_s=40.0)
    rows = history.messages(cid)
    assert [(r["role"], r["content"], r["status"]) for r in rows] == [
        ("user", "Hello", COMPLETE), ("assistant", "Hi there", COMPLETE)]
    assert rows[1]["options"] == '{"temperature": 0.3}' and rows[1]["prompt_tokens"] == 12
    history.rename(cid, "  Renamed   chat ")
    assert history.conversation(cid)["title"] == "Renamed chat"
    with pytest.raises(UserError):
        history.rename(cid, "   ")
    history.delete_conversation(cid)
    assert history.conversations() == [] and history.search("Hello") == []


def test_search_finds_text_in_every_script(history):
    samples = {
        "zh": "我们明天去北京看长城吧", "ja": "東京で寿司を食べました", "ko": "서울에서 김치를 먹었어요",
        "ar": "ذهبت إلى المكتبة أمس", "hi": "मैं कल बाज़ार गया था", "fr": "Le café était délicieux",
    }
    ids = {}
    for lang, text in samples.items():
        cid = history.create_conversation(lang)
        history.add_message(cid, "user", text)
        ids[lang] = cid
    queries = {"zh": "北京看", "ja": "寿司", "ko": "김치를", "ar": "المكتبة", "hi": "बाज़ार", "fr": "délicieux"}
    for lang, query in queries.items():
        hits = history.search(query)
        assert [h.conversation_id for h in hits] == [ids[lang]], lang
        assert query in hits[0].snippet
    assert history.search("长城") and history.search("nothing like this") == []
    mid = history.add_message(ids["fr"], "assistant", "", STREAMING)
    history.update_message(mid, "une réponse sur Montréal", COMPLETE)
    assert [h.message_id for h in history.search("Montréal")] == [mid]  # updates are indexed


def test_replies_left_streaming_are_marked_interrupted_on_reopen(tmp_path):
    store = History(tmp_path / "c.db")
    cid = store.create_conversation()
    mid = store.add_message(cid, "assistant", "partial", STREAMING)
    with store.database.transaction() as conn:  # the process died a while ago
        conn.execute("UPDATE messages SET updated_at = updated_at - ? WHERE id = ?", [STALE_STREAMING_S + 1, mid])
    store.close()
    again = History(tmp_path / "c.db")
    assert again.message(mid)["status"] == INTERRUPTED and again.message(mid)["content"] == "partial"
    assert again.integrity_ok()
    again.close()


def test_a_deleted_conversation_waits_in_the_trash_and_can_be_restored(history):
    cid = history.create_conversation("Harbour plans")
    history.add_message(cid, "user", "Where is the lighthouse?")
    history.trash_conversation(cid)
    assert history.conversations() == [] and history.search("lighthouse") == []
    assert [r["content"] for r in history.messages(cid)] == ["Where is the lighthouse?"], "nothing is deleted yet"
    history.restore_conversation(cid)
    assert [c["title"] for c in history.conversations()] == ["Harbour plans"]
    assert [h.conversation_id for h in history.search("lighthouse")] == [cid]

    history.purge(cid)  # not in the trash: purge leaves it alone
    assert history.conversation(cid)["title"] == "Harbour plans"
    assert [r["content"] for r in history.messages(cid)] == ["Where is the lighthouse?"]
    history.trash_conversation(cid)
    assert history.purge_trash() == [], f"kept for {TRASH_KEEP_S} s"
    history.purge(cid)
    with pytest.raises(UserError, match="not found"):
        history.conversation(cid)
    assert history.messages(cid) == [] and history.integrity_ok()


def test_the_trash_is_emptied_when_the_store_opens_again(tmp_path):
    store = History(tmp_path / "t.db")
    kept, gone = store.create_conversation("kept"), store.create_conversation("gone")
    store.add_message(gone, "user", "bye")
    store.trash_conversation(gone)
    with store.database.transaction() as conn:  # trashed a while ago
        conn.execute("UPDATE conversations SET deleted_at = deleted_at - ? WHERE id = ?", [TRASH_KEEP_S + 1, gone])
    store.close()
    again = History(tmp_path / "t.db")
    assert [c["id"] for c in again.conversations()] == [kept]
    with pytest.raises(UserError):
        again.conversation(gone)
    again.close()


def test_a_queued_message_moves_behind_the_reply_written_while_it_waited(history):
    cid = history.create_conversation()
    first = history.add_message(cid, "user", "one")
    waiting = history.add_message(cid, "user", "two", QUEUED)
    history.add_message(cid, "assistant", "reply to one")
    moved = history.move_to_end(waiting)
    rows = history.messages(cid)
    assert [(r["content"], r["status"]) for r in rows] == [
        ("one", COMPLETE), ("reply to one", COMPLETE), ("two", COMPLETE)]
    assert rows[-1]["id"] == moved == waiting and rows[0]["id"] == first
    assert history.move_to_end(moved) == moved, "already last: it stays where it is"
    assert [r["content"] for r in history.messages(cid)] == ["one", "reply to one", "two"]
    assert [h.message_id for h in history.search("two")] == [moved], "the search index follows the move"


def test_titles_remember_who_wrote_them(history):
    cid = history.create_conversation("first words")
    assert history.conversation(cid)["title_by"] == TITLE_BY_MESSAGE
    history.rename(cid, "My own title")
    assert history.conversation(cid)["title_by"] == TITLE_BY_USER


def test_edit_and_retry_keep_every_version_and_the_branch_shown_follows_the_choice(history):
    cid = history.create_conversation()
    question = history.add_message(cid, "user", "Plan a day in Paris")
    first_reply = history.add_message(cid, "assistant", "Louvre")
    history.branch_before(first_reply)  # Retry
    second_reply = history.add_message(cid, "assistant", "Orsay")
    assert [m["content"] for m in history.messages(cid)] == ["Plan a day in Paris", "Orsay"]
    assert history.versions(second_reply) == [first_reply, second_reply]
    history.branch_before(question)  # Edit of the first message: a new root
    edited = history.add_message(cid, "user", "Plan a day in Lyon")
    history.add_message(cid, "assistant", "Fourvière")
    assert [m["content"] for m in history.messages(cid)] == ["Plan a day in Lyon", "Fourvière"]
    assert history.versions(edited) == [question, edited]
    history.show_version(question)
    assert [m["content"] for m in history.messages(cid)] == ["Plan a day in Paris", "Orsay"], \
        "the earlier version comes back with its latest reply"
    history.add_message(cid, "user", "And the evening?")
    assert [m["content"] for m in history.messages(cid)][-2:] == ["Orsay", "And the evening?"], \
        "the next message follows the branch shown"
    assert len(history.all_messages(cid)) == 6


def test_conversations_of_an_older_database_become_one_branch_each(tmp_path):
    from app.history import MIGRATIONS
    from app.storage.database import Database, migrate

    path = tmp_path / "old.db"
    old = Database(path)
    migrate(old, MIGRATIONS[:6])  # the schema before branches
    with old.transaction() as conn:
        conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 'old', 0, 0)")
        for i, (role, text) in enumerate([("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]):
            conn.execute("INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at) "
                         "VALUES (1, ?, ?, 'complete', ?, ?)", [role, text, i, i])
    old.close()
    history = History(path)
    rows = history.messages(1)
    assert [r["content"] for r in rows] == ["a", "b", "c", "d"]
    assert [r["parent_id"] for r in rows] == [None, rows[0]["id"], rows[1]["id"], rows[2]["id"]]
    history.close()


def test_short_queries_match_text_literally_and_ignore_ascii_case(history):
    cid = history.create_conversation()
    history.add_message(cid, "user", "50% off_now ZZ top")
    history.add_message(cid, "user", "nothing here")
    assert [h.snippet for h in history.search("%")] == ["50% off_now ZZ top"]
    assert len(history.search("_n")) == 1 and len(history.search("zz")) == 1
    assert history.search("a%") == [] and history.search("e_") == []


def test_a_snippet_is_cut_between_words_and_text_without_spaces_where_its_width_ends(history):
    cid = history.create_conversation()
    words = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
             "et dolore magna aliqua. The lighthouse keeper watched the harbour while seagulls circled above the "
             "breakwater and fishermen mended their nets beside quiet boats.")
    history.add_message(cid, "user", words)
    history.add_message(cid, "user", "短い" * 40 + "灯台" + "長い" * 40)
    [hit] = history.search("lighthouse")
    assert hit.snippet == ("…tempor incididunt ut labore et dolore magna aliqua. The lighthouse keeper watched the "
                           "harbour while seagulls circled above the…")
    [hit] = history.search("灯台")
    assert hit.snippet == "…" + "短い" * 30 + "灯台" + "長い" * 30 + "…"
