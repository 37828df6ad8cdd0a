"""The one guarded connection on real SQLite files: atomic migrations and writes, one connection
shared by History and DocumentStore, the staleness rule for streaming replies, bm25 retrieval."""

from __future__ import annotations

import sqlite3
import time

import pytest

from app.storage.document_store import Chunk, Document
from app.history import COMPLETE, INTERRUPTED, MIGRATIONS, STALE_STREAMING_S, STREAMING, History
from app.storage.database import Database, migrate
from app.storage.document_store import DocumentStore


def document(texts: list[str], sha256: str = "sha-1") -> Document:
    return Document(sha256=sha256, file_name="a.md", kind="markdown", title="A", pages=None, language="en",
                    tokens=10, markdown="\n\n".join(t or "" for t in texts), chunks=[Chunk(t, 5) for t in texts])


def applied(database: Database) -> list[str]:
    return [row[0] for row in database.conn.execute("SELECT name FROM _migrations ORDER BY name")]


@pytest.fixture()
def history(tmp_path):
    history = History(tmp_path / "db" / "nemo-chat.db")
    yield history
    history.close()


@pytest.fixture()
def store(history) -> DocumentStore:
    return DocumentStore(history)


# -- migrations ---------------------------------------------------------------------------------


def test_a_migration_failing_half_way_leaves_the_database_as_it_was(tmp_path):
    def m003_half_done(db):
        db["extra"].create({"id": int}, pk="id")
        db["extra"].insert({"id": 1})
        raise RuntimeError("disk on fire")

    path = tmp_path / "m.db"
    database = Database(path)
    with pytest.raises(RuntimeError, match="disk on fire"):
        migrate(database, [*MIGRATIONS[:2], m003_half_done, *MIGRATIONS[2:]])
    assert applied(database) == ["m001_conversations", "m002_search"]
    assert "extra" not in database.db.table_names() and "documents" not in database.db.table_names()
    database.close()

    History(path).close()  # the next start, with the good list
    database = Database(path)
    assert applied(database) == [step.__name__ for step in MIGRATIONS] and "extra" not in database.db.table_names()
    assert migrate(database, MIGRATIONS) == [] and database.integrity_ok()
    database.close()


def test_a_migration_that_commits_on_its_own_is_refused(tmp_path):
    def m001_script(db):
        db.conn.executescript("CREATE TABLE loose (a)")  # sqlite3's executescript commits first

    database = Database(tmp_path / "s.db")
    with pytest.raises(RuntimeError, match="m001_script committed on its own"):
        migrate(database, [m001_script])
    assert applied(database) == []
    database.close()


# -- transactions -------------------------------------------------------------------------------


def test_a_failing_transaction_leaves_nothing_behind(history):
    cid = history.create_conversation("kept")
    with pytest.raises(ValueError):
        with history.database.transaction() as conn:
            history.db["conversations"].insert({"title": "gone", "created_at": 0, "updated_at": 0})
            with history.database.transaction():  # a nested one joins the outer one
                history.add_message(cid, "user", "gone too")
            with conn:  # as sqlite-utils 3 wraps its writes: must not commit the outer transaction
                conn.execute("INSERT INTO conversations (title) VALUES ('gone as well')")
            conn.commit()
            raise ValueError("half way")
    assert [c["title"] for c in history.conversations()] == ["kept"] and history.messages(cid) == []
    assert history.search("gone") == [] and not history.database.conn.in_transaction


def test_a_document_whose_second_chunk_fails_is_not_stored(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.add(document(["first chunk about zeppelins", None, "third"]))
    assert store.documents() == []
    assert store.db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    assert store.related_chunks(1, "zeppelins") == []
    document_id, added = store.add(document(["first chunk about zeppelins", "second", "third"]))
    assert added and store.related_chunks(document_id, "zeppelins") == [0, 1, 2]


def test_deletes_that_belong_together_happen_together(history, store):
    cid = history.create_conversation()
    history.add_message(cid, "user", "hello there")
    document_id, _ = store.add(document(["a passage about zeppelins"]))
    store.put_cached("k", "summary", "made from it", source="sha-1")
    for table in ("conversations", "documents"):  # the second DELETE of each pair fails
        history.db.execute(f"CREATE TEMP TRIGGER keep_{table} BEFORE DELETE ON {table}"
                           " BEGIN SELECT RAISE(ABORT, 'kept'); END")
    with pytest.raises(sqlite3.IntegrityError, match="kept"):
        history.delete_conversation(cid)
    with pytest.raises(sqlite3.IntegrityError, match="kept"):
        store.delete(document_id)
    assert [m["content"] for m in history.messages(cid)] == ["hello there"] and store.cached("k") == "made from it"
    for table in ("conversations", "documents"):
        history.db.execute(f"DROP TRIGGER keep_{table}")
    history.delete_conversation(cid)
    store.delete(document_id)
    assert history.messages(cid) == [] and store.cached("k") is None and store.documents() == []
    assert history.db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'zeppelins'").fetchone()[0] == 0


def test_history_and_document_store_share_one_connection(history, store):
    assert store.database is history.database and store.db.conn is history.db.conn
    document_id, _ = store.add(document(["shared"]))
    with history.database.transaction():  # one transaction over both
        history.create_conversation("about the document")
        store.delete(document_id)
    history.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.documents()


# -- replies left streaming ---------------------------------------------------------------------


def test_only_stale_streaming_replies_become_interrupted(tmp_path):
    path = tmp_path / "chat.db"
    ui = History(path)
    cid = ui.create_conversation()
    live = ui.add_message(cid, "assistant", "still growing", STREAMING)
    dead = ui.add_message(cid, "assistant", "cut off", STREAMING)
    with ui.database.transaction() as conn:
        conn.execute("UPDATE messages SET updated_at = ? WHERE id = ?", [time.time() - STALE_STREAMING_S - 1, dead])
    cli = History(path)  # a second process opens the same file while the UI streams
    assert cli.message(live)["status"] == STREAMING
    assert (cli.message(dead)["status"], cli.message(dead)["content"]) == (INTERRUPTED, "cut off")
    ui.update_message(live, "still growing, done", COMPLETE)
    assert cli.message(live)["status"] == COMPLETE
    ui.close()
    cli.close()


# -- bm25 retrieval -----------------------------------------------------------------------------


def test_bm25_ranks_the_passage_with_the_question_words_first(store):
    texts = [
        "The town council met in the hall and the mayor spoke about the roads.",
        "Farmers sold wool at the market on fine days.",
        "In 1911 a zeppelin landed in Harlow, and the whole town came to see the zeppelin.",
        "The library opens on Sundays.",
        "A zeppelin was mentioned once by the baker.",
    ]
    document_id, _ = store.add(document(texts))
    ranked = store.related_chunks(document_id, "When did the zeppelin land in Harlow?")
    assert ranked[:2] == [2, 4] and sorted(ranked) == [0, 1, 2, 3, 4]
    assert store.related_chunks(document_id, "Is the LIBRARY open on sundays?", limit=1) == [3]
    assert store.related_chunks(document_id, "Which library?") == [3, 0, 1, 2, 4], "then the others in order"
    assert store.related_chunks(document_id, "a to of?") == [0, 1, 2, 3, 4], "no term of 3+ characters"


@pytest.mark.parametrize("texts, question", [
    (["北京市政府今天批准了明年的预算。", "学校将获得新的电脑。", "图书馆周日也将开放。", "市民对预算表示满意。"],
     "图书馆什么时候开放？"),
    (["東京都議会は来年度の予算を承認しました。", "学校には新しいコンピューターが配備されます。",
      "図書館は日曜日も開館します。", "市民は予算に満足しています。"], "図書館は日曜日に開いていますか？"),
])
def test_bm25_ranks_chinese_and_japanese_passages(store, texts, question):
    document_id, _ = store.add(document(texts))
    ranked = store.related_chunks(document_id, question)
    assert ranked[0] == 2 and sorted(ranked) == [0, 1, 2, 3]


def test_chunk_search_is_filled_for_documents_stored_before_it(tmp_path):
    path = tmp_path / "old.db"
    database = Database(path)
    migrate(database, MIGRATIONS[:4])  # a database from before m005_chunk_search
    with database.transaction() as conn:
        conn.execute("INSERT INTO documents (id, sha256, title, file_name, kind, language, tokens, markdown,"
                     " created_at) VALUES (7, 'sha', 'Old', 'old.md', 'markdown', 'en', 9, '', 0)")
        conn.executemany("INSERT INTO chunks (document_id, position, text, tokens) VALUES (7, ?, ?, 3)",
                         [(0, "nothing here"), (1, "the zeppelin landed")])
    database.close()
    history = History(path)
    assert DocumentStore(history).related_chunks(7, "zeppelin") == [1, 0]
    history.close()
