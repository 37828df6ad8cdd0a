"""The SQLite store: conversations and messages, full-text search, and every named migration.

One file, WAL mode, foreign keys on, one guarded connection (app.storage.database) shared with the
DocumentStore. Replies are written while they stream, so a crash loses at most the last second.
FTS5 uses the trigram tokenizer so Chinese and Japanese are searchable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from app.base.errors import UserError
from app.storage.database import Database, Migration, migrate

STREAMING, COMPLETE, STOPPED, INTERRUPTED, FAILED = "streaming", "complete", "stopped", "interrupted", "error"
QUEUED = "queued"  # a user message sent while a reply runs: shown, kept, answered after it
STALE_STREAMING_S = 10.0  # a live reply is rewritten every 0.5 s as tokens come; older ones were cut off
TRASH_KEEP_S = 10.0  # a deleted conversation can be restored (Undo) this long, then it is gone
TITLE_BY_MESSAGE, TITLE_BY_DOCUMENT, TITLE_BY_MODEL, TITLE_BY_USER = "message", "document", "model", "user"
OWN_SETTINGS = ("system_prompt", "temperature", "max_tokens")  # a conversation's own; None: the defaults
MAX_TEMPERATURE, MAX_REPLY_TOKENS = 2.0, 131072

MIGRATIONS: list[Migration] = []  # in order; each is recorded in `_migrations` under its function name


def migration(step: Migration) -> Migration:
    """Register a migration (decorator); its name is its function name."""
    MIGRATIONS.append(step)
    return step


def _execute_each(db: sqlite_utils.Database, *statements: str) -> None:
    """One statement at a time: executescript would commit the migration's transaction."""
    for sql in statements:
        db.execute(sql)


@migration
def m001_conversations(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {"id": int, "title": str, "created_at": float, "updated_at": float},
        pk="id",
    )
    db["messages"].create(
        {
            "id": int, "conversation_id": int, "role": str, "content": str, "status": str,
            "model": str, "options": str, "prompt_tokens": int, "cached_tokens": int,
            "completion_tokens": int, "ttft_s": float, "tokens_per_s": float,
            "created_at": float, "updated_at": float,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "role", "content", "status"},
    )
    db["messages"].create_index(["conversation_id", "id"])
    # sqlite-utils cannot declare ON DELETE CASCADE; messages are deleted explicitly instead.


@migration
def m002_search(db: sqlite_utils.Database) -> None:
    """External-content trigram FTS over messages.content, kept in step by triggers."""
    _execute_each(
        db,
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "content, content='messages', content_rowid='id', tokenize='trigram')",
        "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
        " INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
        "CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
        " INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
        "CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN"
        " INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);"
        " INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    )


@migration
def m003_documents(db: sqlite_utils.Database) -> None:
    """Documents stored once by SHA-256, their chunks and summaries, and a generic result cache.

    `cached_results` holds per-chunk work (kind 'summary', 'translation', ...) under a key made of
    the chunk hash, model, prompt version and options; `source` is the document's SHA-256 so that
    deleting a document deletes what was made from it.
    """
    _execute_each(
        db,
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
            file_name TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER, language TEXT NOT NULL,
            tokens INTEGER NOT NULL, markdown TEXT NOT NULL, created_at REAL NOT NULL)""",
        """CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL,
            page_start INTEGER, page_end INTEGER, section TEXT NOT NULL DEFAULT '')""",
        "CREATE UNIQUE INDEX chunks_position ON chunks(document_id, position)",
        """CREATE TABLE summaries (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            model TEXT NOT NULL, options TEXT NOT NULL, text TEXT NOT NULL,
            chunks INTEGER NOT NULL, levels INTEGER NOT NULL, created_at REAL NOT NULL)""",
        "CREATE UNIQUE INDEX summaries_options ON summaries(document_id, model, options)",
        """CREATE TABLE cached_results (
            key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, source TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL)""",
        "CREATE INDEX cached_results_source ON cached_results(source)",
    )


@migration
def m004_translations(db: sqlite_utils.Database) -> None:
    """Translations, kept with their source document (or their pasted text), one per job settings."""
    _execute_each(
        db,
        """CREATE TABLE translations (
            id INTEGER PRIMARY KEY,
            document_id INTEGER REFERENCES documents(id) ON DELETE CASCADE,
            source_sha256 TEXT NOT NULL, source_text TEXT NOT NULL, title TEXT NOT NULL, format TEXT NOT NULL,
            source_language TEXT NOT NULL, target_language TEXT NOT NULL, model TEXT NOT NULL,
            glossary TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, segments INTEGER NOT NULL,
            segments_done INTEGER NOT NULL, misses TEXT NOT NULL, created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        """CREATE UNIQUE INDEX translations_job ON translations(
            source_sha256, format, source_language, target_language, model, glossary)""",
        "CREATE INDEX translations_document ON translations(document_id)",
    )


@migration
def m005_chunk_search(db: sqlite_utils.Database) -> None:
    """External-content trigram FTS over chunks.text (ranked with bm25), filled from existing chunks."""
    _execute_each(
        db,
        "CREATE VIRTUAL TABLE chunks_fts USING fts5("
        "text, content='chunks', content_rowid='id', tokenize='trigram')",
        "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN"
        " INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
        "CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN"
        " INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
        "CREATE TRIGGER chunks_au AFTER UPDATE OF text ON chunks BEGIN"
        " INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);"
        " INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
        "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')",
    )


@migration
def m006_trash_and_title_source(db: sqlite_utils.Database) -> None:
    """Deleted conversations wait in the trash (`deleted_at`) before they are gone; `title_by`
    says who wrote the title, so a title the user chose is never replaced."""
    _execute_each(
        db,
        "ALTER TABLE conversations ADD COLUMN deleted_at REAL",
        f"ALTER TABLE conversations ADD COLUMN title_by TEXT NOT NULL DEFAULT '{TITLE_BY_MESSAGE}'",
    )


@migration
def m007_branches(db: sqlite_utils.Database) -> None:
    """Edit and Retry keep the earlier version: each message has the one before it on its branch
    (`parent_id`), each conversation the last message of the branch it shows (`current_id`).
    Existing conversations become one branch each. `source` identifies an imported conversation."""
    _execute_each(
        db,
        "ALTER TABLE messages ADD COLUMN parent_id INTEGER",
        "ALTER TABLE conversations ADD COLUMN current_id INTEGER",
        "ALTER TABLE conversations ADD COLUMN source TEXT",
        f"""UPDATE messages SET parent_id = (SELECT MAX(p.id) FROM messages p WHERE p.conversation_id =
            messages.conversation_id AND p.id < messages.id AND p.status != '{QUEUED}') WHERE status != '{QUEUED}'""",
        f"""UPDATE conversations SET current_id = (SELECT MAX(id) FROM messages WHERE conversation_id =
            conversations.id AND status != '{QUEUED}')""",
        "CREATE INDEX messages_parent ON messages(conversation_id, parent_id)",
        "CREATE UNIQUE INDEX conversations_source ON conversations(source) WHERE source IS NOT NULL",
    )


@migration
def m008_readable_tool_steps(db: sqlite_utils.Database) -> None:
    """Tool results imported as plain text by older versions become tool steps (a JSON record with
    the result as its text), so their conversations open, continue and export."""
    db.execute("""UPDATE messages SET content = json_object('id', substr(lower(hex(randomblob(5))), 1, 9),
        'name', 'tool', 'arguments', json_object(), 'round', 0, 'result', content, 'error', NULL,
        'content', content) WHERE role = 'tool' AND (NOT json_valid(content) OR json_type(content) != 'object')""")


@migration
def m009_conversation_summaries(db: sqlite_utils.Database) -> None:
    """A long conversation's oldest messages folded into a running summary written by the model: the
    summary and the range of messages it covers (first and last message id, how many messages)."""
    _execute_each(
        db,
        """CREATE TABLE conversation_summaries (
            id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            first_message_id INTEGER NOT NULL, last_message_id INTEGER NOT NULL, messages INTEGER NOT NULL,
            text TEXT NOT NULL, model TEXT NOT NULL, created_at REAL NOT NULL)""",
        "CREATE INDEX conversation_summaries_conversation ON conversation_summaries(conversation_id, last_message_id)",
    )


@migration
def m010_conversation_settings(db: sqlite_utils.Database) -> None:
    """A conversation's own system prompt, temperature and max reply tokens (NULL: the defaults from
    Settings), and when it was pinned to the top of the sidebar (NULL: not pinned)."""
    _execute_each(
        db,
        "ALTER TABLE conversations ADD COLUMN system_prompt TEXT",
        "ALTER TABLE conversations ADD COLUMN temperature REAL",
        "ALTER TABLE conversations ADD COLUMN max_tokens INTEGER",
        "ALTER TABLE conversations ADD COLUMN pinned_at REAL",
    )


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int
    role: str
    snippet: str


class History:
    """Conversations and their messages in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.database = Database(self.path)
        self.db = self.database.db  # the sqlite-utils view of the one connection
        try:
            migrate(self.database, MIGRATIONS)
            self._mark_interrupted()
            self.purge_trash()
        except BaseException:
            self.database.close()
            raise

    def close(self) -> None:
        self.database.close()

    def integrity_ok(self) -> bool:
        return self.database.integrity_ok()

    def _mark_interrupted(self) -> None:
        """Replies left 'streaming' by a crash or kill are kept, marked as interrupted; one still
        being written (by another process) was updated less than STALE_STREAMING_S ago. Messages
        left queued are kept as plain, unanswered messages."""
        with self.database.transaction() as conn:
            conn.execute("UPDATE messages SET status = ? WHERE status = ? AND updated_at < ?",
                         [INTERRUPTED, STREAMING, time.time() - STALE_STREAMING_S])
            for (message_id,) in conn.execute("SELECT id FROM messages WHERE status = ? AND updated_at < ? ORDER BY id",
                                              [QUEUED, time.time() - STALE_STREAMING_S]).fetchall():
                self._attach(message_id, COMPLETE)

    # -- conversations ---------------------------------------------------------------------------
    def create_conversation(self, title: str = "", title_by: str = TITLE_BY_MESSAGE) -> int:
        """A new conversation; an empty title (none yet) is worded by the faces ('New chat')."""
        now = time.time()
        row = {"title": title, "title_by": title_by, "created_at": now, "updated_at": now}
        with self.database.transaction():
            return self.db["conversations"].insert(row).last_pk

    def conversations(self, limit: int = 500, pinned_first: bool = False) -> list[dict]:
        """Newest first (with `pinned_first`, the pinned ones before the others); conversations in
        the trash are left out."""
        order = "updated_at desc, id desc"
        with self.database.lock:
            return list(self.db["conversations"].rows_where(
                "deleted_at IS NULL", order_by=f"pinned_at IS NULL, {order}" if pinned_first else order, limit=limit))

    def pin(self, conversation_id: int, pinned: bool = True) -> None:
        """Keep the conversation at the top of the sidebar (or let it go back to its place)."""
        with self.database.transaction():
            self.conversation(conversation_id)
            self.db["conversations"].update(conversation_id, {"pinned_at": time.time() if pinned else None})

    def set_own_settings(self, conversation_id: int, system_prompt: str | None = None,
                         temperature: float | None = None, max_tokens: int | None = None) -> None:
        """The conversation's own system prompt, temperature and max reply tokens; None (or a blank
        prompt) means the default from Settings."""
        if temperature is not None and not 0 <= temperature <= MAX_TEMPERATURE:
            raise UserError("history_bad_temperature", value=temperature, most=MAX_TEMPERATURE)
        if max_tokens is not None and not 1 <= max_tokens <= MAX_REPLY_TOKENS:
            raise UserError("history_bad_max_tokens", value=max_tokens, most=MAX_REPLY_TOKENS)
        values = {"system_prompt": system_prompt if system_prompt and system_prompt.strip() else None,
                  "temperature": None if temperature is None else float(temperature),
                  "max_tokens": None if max_tokens is None else int(max_tokens)}
        with self.database.transaction():
            self.conversation(conversation_id)
            self.db["conversations"].update(conversation_id, values)

    def own_settings(self, conversation_id: int) -> dict:
        """The conversation's own settings (OWN_SETTINGS), None where it keeps the default."""
        row = self.conversation(conversation_id)
        return {name: row[name] for name in OWN_SETTINGS}

    def conversation(self, conversation_id: int) -> dict:
        try:
            with self.database.lock:
                return self.db["conversations"].get(conversation_id)
        except sqlite_utils.db.NotFoundError:
            raise UserError("history_conversation_not_found", id=conversation_id) from None

    def rename(self, conversation_id: int, title: str, by: str = TITLE_BY_USER) -> None:
        """A new title, written by `by` (the user, the first message, a document or the model)."""
        title = " ".join(title.split())[:200]
        if not title:
            raise UserError("history_empty_title")
        with self.database.transaction():
            self.conversation(conversation_id)
            self.db["conversations"].update(conversation_id, {"title": title, "title_by": by})

    def delete_conversation(self, conversation_id: int) -> None:
        """The conversation and its messages, together, at once."""
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", [conversation_id])
            conn.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    def trash_conversation(self, conversation_id: int) -> None:
        """Hide the conversation (lists, search); `restore_conversation` brings it back until
        `purge_trash` deletes it for good, TRASH_KEEP_S later."""
        with self.database.transaction():
            self.conversation(conversation_id)
            self.db["conversations"].update(conversation_id, {"deleted_at": time.time()})

    def restore_conversation(self, conversation_id: int) -> None:
        with self.database.transaction():
            if self.conversation(conversation_id)["deleted_at"] is None:
                return
            self.db["conversations"].update(conversation_id, {"deleted_at": None})

    def purge(self, conversation_id: int) -> None:
        """Delete a conversation for good if it is (still) in the trash."""
        with self.database.transaction() as conn:
            if conn.execute("SELECT 1 FROM conversations WHERE id = ? AND deleted_at IS NOT NULL",
                            [conversation_id]).fetchone():
                self.delete_conversation(conversation_id)

    def purge_trash(self, older_than_s: float = TRASH_KEEP_S) -> list[int]:
        """Delete for good the conversations trashed at least `older_than_s` ago; their ids."""
        with self.database.transaction() as conn:
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?",
                [time.time() - older_than_s])]
            for conversation_id in ids:
                self.delete_conversation(conversation_id)
        return ids

    # -- messages -------------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, status: str = COMPLETE, **meta) -> int:
        """A message at the end of the branch shown (it becomes the branch's last); a queued one
        waits outside the branch until `move_to_end` gives it its place."""
        now = time.time()
        row = {"conversation_id": conversation_id, "role": role, "content": content,
               "status": status, "created_at": now, "updated_at": now, **_meta_columns(meta)}
        with self.database.transaction():
            current = self.conversation(conversation_id)["current_id"]
            if status == QUEUED:
                message_id = self.db["messages"].insert(row).last_pk
                self.db["conversations"].update(conversation_id, {"updated_at": now})
            else:
                message_id = self.db["messages"].insert({**row, "parent_id": current}).last_pk
                self.db["conversations"].update(conversation_id, {"updated_at": now, "current_id": message_id})
            return message_id

    def update_message(self, message_id: int, content: str, status: str | None = None, **meta) -> None:
        """Rewrite a (streaming) reply; called at least once a second while it grows."""
        values = {"content": content, "updated_at": time.time(), **_meta_columns(meta)}
        if status:
            values["status"] = status
        with self.database.transaction():
            try:
                self.db["messages"].update(message_id, values)
            except sqlite_utils.db.NotFoundError:
                raise UserError("history_message_not_found", id=message_id) from None

    def messages(self, conversation_id: int) -> list[dict]:
        """The branch shown, first message first, then the messages still queued."""
        with self.database.lock:
            branch = self.db.execute_returning_dicts(
                """WITH RECURSIVE branch(id, depth) AS (
                       SELECT current_id, 0 FROM conversations WHERE id = ? AND current_id IS NOT NULL
                       UNION ALL SELECT m.parent_id, b.depth + 1 FROM messages m JOIN branch b ON m.id = b.id
                       WHERE m.parent_id IS NOT NULL)
                   SELECT m.* FROM branch b JOIN messages m ON m.id = b.id ORDER BY b.depth DESC""", [conversation_id])
            queued = self.db["messages"].rows_where("conversation_id = ? AND status = ?", [conversation_id, QUEUED],
                                                    order_by="id")
            return branch + list(queued)

    def all_messages(self, conversation_id: int) -> list[dict]:
        """Every message of every branch, in the order they were written."""
        with self.database.lock:
            return list(self.db["messages"].rows_where("conversation_id = ?", [conversation_id], order_by="id"))

    def versions(self, message_id: int) -> list[int]:
        """The versions of a message's turn (itself and its siblings: Edits or Retries), oldest first."""
        row = self.message(message_id)
        if row["status"] == QUEUED:
            return [message_id]
        with self.database.lock:
            return [r[0] for r in self.db.execute(
                "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? AND status != ? ORDER BY id",
                [row["conversation_id"], row["parent_id"], QUEUED]).fetchall()]

    def version_groups(self, conversation_id: int) -> dict[int, list[int]]:
        """For each message that has other versions: all the versions of its turn, oldest first
        (one query for a whole conversation)."""
        turns: dict[int | None, list[int]] = {}
        with self.database.lock:
            for message_id, parent_id in self.db.execute(
                    "SELECT id, parent_id FROM messages WHERE conversation_id = ? AND status != ? ORDER BY id",
                    [conversation_id, QUEUED]).fetchall():
                turns.setdefault(parent_id, []).append(message_id)
        return {message_id: ids for ids in turns.values() if len(ids) > 1 for message_id in ids}

    def count_conversations(self) -> int:
        """How many conversations the sidebar can list (the trash left out)."""
        with self.database.lock:
            return self.db.execute("SELECT COUNT(*) FROM conversations WHERE deleted_at IS NULL").fetchone()[0]

    def show_version(self, message_id: int) -> None:
        """Show the branch through `message_id`, down to its latest message."""
        with self.database.transaction() as conn:
            row = self.message(message_id)
            tip = message_id
            while child := conn.execute("SELECT MAX(id) FROM messages WHERE parent_id = ? AND status != ?",
                                        [tip, QUEUED]).fetchone()[0]:
                tip = child
            self.db["conversations"].update(row["conversation_id"], {"current_id": tip})

    def branch_before(self, message_id: int) -> None:
        """Make the next message a new version of `message_id` (Edit, Retry): the branch shown ends
        just before it; the old version and what follows it are kept."""
        with self.database.transaction():
            row = self.message(message_id)
            self.db["conversations"].update(row["conversation_id"], {"current_id": row["parent_id"]})

    def message(self, message_id: int) -> dict:
        try:
            with self.database.lock:
                return self.db["messages"].get(message_id)
        except sqlite_utils.db.NotFoundError:
            raise UserError("history_message_not_found", id=message_id) from None

    def delete_message(self, message_id: int) -> None:
        """Delete a message that nothing follows (a reply stopped before its first word)."""
        with self.database.transaction() as conn:
            row = self.message(message_id)
            conn.execute("UPDATE conversations SET current_id = ? WHERE id = ? AND current_id = ?",
                         [row["parent_id"], row["conversation_id"], message_id])
            conn.execute("DELETE FROM messages WHERE id = ?", [message_id])

    def move_to_end(self, message_id: int, status: str = COMPLETE) -> int:
        """Give a (queued) message the last place of the branch shown and `status`; its id."""
        with self.database.transaction():
            self._attach(message_id, status)
            return message_id

    def _attach(self, message_id: int, status: str) -> None:
        row = self.message(message_id)
        if row["status"] != QUEUED:
            self.db["messages"].update(message_id, {"status": status})
            return
        current = self.conversation(row["conversation_id"])["current_id"]
        self.db["messages"].update(message_id, {"status": status, "parent_id": current, "updated_at": time.time()})
        self.db["conversations"].update(row["conversation_id"], {"current_id": message_id})

    # -- search ---------------------------------------------------------------------------------
    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing `query` (any language, any length), newest first. Both ways read
        messages newest first and stop at `limit`, so a common word costs no more than a rare one."""
        query = query.strip()
        if not query:
            return []
        if len(query) >= 3:  # trigram FTS needs three characters; shorter ones are looked for directly
            phrase = '"' + query.replace('"', '""') + '"'
            sql = """SELECT m.id, m.conversation_id, m.role, m.content, c.title FROM messages_fts f
                     JOIN messages m ON m.id = f.rowid JOIN conversations c ON c.id = m.conversation_id
                     WHERE messages_fts MATCH ? AND c.deleted_at IS NULL ORDER BY f.rowid DESC LIMIT ?"""
            args = [phrase, limit]
        else:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql = """SELECT m.id, m.conversation_id, m.role, m.content, c.title FROM messages m
                     JOIN conversations c ON c.id = m.conversation_id
                     WHERE m.content LIKE ? ESCAPE '\\' AND c.deleted_at IS NULL ORDER BY m.id DESC LIMIT ?"""
            args = [pattern, limit]
        with self.database.lock:
            rows = self.db.execute(sql, args).fetchall()
        return [SearchHit(conv, title, mid, role, _snippet(content, query)) for mid, conv, role, content, title in rows]


def _meta_columns(meta: dict) -> dict:
    if "options" in meta and not isinstance(meta["options"], str):
        meta = {**meta, "options": json.dumps(meta["options"], ensure_ascii=False)}
    return meta


def _snippet(content: str, query: str, width: int = 60) -> str:
    """About `width` characters either side of the first match of `query`, cut between words (a text
    without spaces near the cut, as Chinese or Japanese, is cut where the width ends)."""
    text = content.replace("\n", " ")
    at = max(text.lower().find(query.lower()), 0)
    start, end = max(0, at - width), min(len(text), at + len(query) + width)
    if start and text[start - 1] != " " and (space := text.find(" ", start, at)) >= 0:
        start = space + 1
    if end < len(text) and text[end] != " " and (space := text.rfind(" ", at + len(query), end)) >= 0:
        end = space
    return ("…" if start else "") + text[start:end].strip() + ("…" if end < len(text) else "")
