"""The SQLite store: conversations and messages, full-text search, named migrations.

One file, WAL mode, foreign keys on. Replies are written while they stream, so a crash loses at
most the last second. FTS5 uses the trigram tokenizer so Chinese and Japanese are searchable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import sqlite_utils

from .errors import UserError

STREAMING, COMPLETE, STOPPED, INTERRUPTED, FAILED = "streaming", "complete", "stopped", "interrupted", "error"


def _m001_conversations(db: sqlite_utils.Database) -> None:
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


def _m002_search(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='id', tokenize='trigram');
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        """
    )


def _m003_documents(db: sqlite_utils.Database) -> None:
    """Documents stored once by SHA-256, their chunks and summaries, and a generic result cache.

    `cached_results` holds per-chunk work (kind 'summary', 'translation', ...) under a key made of
    the chunk hash, model, prompt version and options; `source` is the document's SHA-256 so that
    deleting a document deletes what was made from it.
    """
    db.executescript(
        """
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
            file_name TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER, language TEXT NOT NULL,
            tokens INTEGER NOT NULL, markdown TEXT NOT NULL, created_at REAL NOT NULL);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL,
            page_start INTEGER, page_end INTEGER, section TEXT NOT NULL DEFAULT '');
        CREATE UNIQUE INDEX chunks_position ON chunks(document_id, position);
        CREATE TABLE summaries (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            model TEXT NOT NULL, options TEXT NOT NULL, text TEXT NOT NULL,
            chunks INTEGER NOT NULL, levels INTEGER NOT NULL, created_at REAL NOT NULL);
        CREATE UNIQUE INDEX summaries_options ON summaries(document_id, model, options);
        CREATE TABLE cached_results (
            key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, source TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL);
        CREATE INDEX cached_results_source ON cached_results(source);
        """
    )


def _m004_translations(db: sqlite_utils.Database) -> None:
    """Translations, kept with their source document (or their pasted text), one per job settings."""
    db.executescript(
        """
        CREATE TABLE translations (
            id INTEGER PRIMARY KEY,
            document_id INTEGER REFERENCES documents(id) ON DELETE CASCADE,
            source_sha256 TEXT NOT NULL, source_text TEXT NOT NULL, title TEXT NOT NULL, format TEXT NOT NULL,
            source_language TEXT NOT NULL, target_language TEXT NOT NULL, model TEXT NOT NULL,
            glossary TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, segments INTEGER NOT NULL,
            segments_done INTEGER NOT NULL, misses TEXT NOT NULL, created_at REAL NOT NULL,
            updated_at REAL NOT NULL);
        CREATE UNIQUE INDEX translations_job ON translations(
            source_sha256, format, source_language, target_language, model, glossary);
        CREATE INDEX translations_document ON translations(document_id);
        """
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("m001_conversations", _m001_conversations),
    ("m002_search", _m002_search),
    ("m003_documents", _m003_documents),
    ("m004_translations", _m004_translations),
]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet recorded in `_migrations`, in order; return their names."""
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": float}, pk="name")
    done = {row["name"] for row in db["_migrations"].rows}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with db.conn:
            step(db)
            db["_migrations"].insert({"name": name, "applied_at": time.time()})
        applied.append(name)
    return applied


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        with self._lock:
            migrate(self.db)
            self._mark_interrupted()

    def close(self) -> None:
        self.db.conn.close()

    def _mark_interrupted(self) -> None:
        """Replies left 'streaming' by a crash or kill are kept, marked as interrupted."""
        self.db.execute("UPDATE messages SET status = ? WHERE status = ?", [INTERRUPTED, STREAMING])

    # -- conversations ---------------------------------------------------------------------------
    def create_conversation(self, title: str = "New chat") -> int:
        now = time.time()
        with self._lock, self.db.conn:
            table = self.db["conversations"]
            table.insert({"title": title, "created_at": now, "updated_at": now})
            return table.last_pk

    def conversations(self, limit: int = 500) -> list[dict]:
        """Newest first."""
        return list(self.db["conversations"].rows_where(order_by="updated_at desc, id desc", limit=limit))

    def conversation(self, conversation_id: int) -> dict:
        try:
            return self.db["conversations"].get(conversation_id)
        except sqlite_utils.db.NotFoundError:
            raise UserError(f"conversation {conversation_id} not found") from None

    def rename(self, conversation_id: int, title: str) -> None:
        title = " ".join(title.split())[:200]
        if not title:
            raise UserError("a conversation title cannot be empty")
        self.conversation(conversation_id)
        with self._lock, self.db.conn:
            self.db["conversations"].update(conversation_id, {"title": title})

    def delete_conversation(self, conversation_id: int) -> None:
        with self._lock, self.db.conn:
            self.db.execute("DELETE FROM messages WHERE conversation_id = ?", [conversation_id])
            self.db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    def _touch(self, conversation_id: int) -> None:
        self.db["conversations"].update(conversation_id, {"updated_at": time.time()})

    # -- messages -------------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, status: str = COMPLETE, **meta) -> int:
        now = time.time()
        row = {"conversation_id": conversation_id, "role": role, "content": content,
               "status": status, "created_at": now, "updated_at": now, **_meta_columns(meta)}
        with self._lock, self.db.conn:
            self.conversation(conversation_id)
            table = self.db["messages"]
            table.insert(row)
            self._touch(conversation_id)
            return table.last_pk

    def update_message(self, message_id: int, content: str, status: str | None = None, **meta) -> None:
        """Rewrite a (streaming) reply; called at least once a second while it grows."""
        values = {"content": content, "updated_at": time.time(), **_meta_columns(meta)}
        if status:
            values["status"] = status
        with self._lock, self.db.conn:
            self.db["messages"].update(message_id, values)

    def messages(self, conversation_id: int) -> list[dict]:
        return list(self.db["messages"].rows_where("conversation_id = ?", [conversation_id], order_by="id"))

    def message(self, message_id: int) -> dict:
        try:
            return self.db["messages"].get(message_id)
        except sqlite_utils.db.NotFoundError:
            raise UserError(f"message {message_id} not found") from None

    def delete_messages_from(self, conversation_id: int, message_id: int) -> None:
        """Delete this message and every later one (for Retry and Edit)."""
        with self._lock, self.db.conn:
            self.db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND id >= ?", [conversation_id, message_id]
            )

    # -- search ---------------------------------------------------------------------------------
    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing `query` (any language); newest conversations first."""
        query = query.strip()
        if not query:
            return []
        if len(query) >= 3:  # trigram FTS needs three characters; shorter falls back to LIKE
            phrase = '"' + query.replace('"', '""') + '"'
            sql = """SELECT m.id, m.conversation_id, m.role, m.content, c.title FROM messages_fts f
                     JOIN messages m ON m.id = f.rowid JOIN conversations c ON c.id = m.conversation_id
                     WHERE messages_fts MATCH ? ORDER BY c.updated_at DESC, m.id LIMIT ?"""
            args = [phrase, limit]
        else:
            sql = """SELECT m.id, m.conversation_id, m.role, m.content, c.title FROM messages m
                     JOIN conversations c ON c.id = m.conversation_id
                     WHERE instr(lower(m.content), lower(?)) > 0 ORDER BY c.updated_at DESC, m.id LIMIT ?"""
            args = [query, limit]
        rows = self.db.execute(sql, args).fetchall()
        return [SearchHit(conv, title, mid, role, _snippet(content, query)) for mid, conv, role, content, title in rows]

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _meta_columns(meta: dict) -> dict:
    if "options" in meta and not isinstance(meta["options"], str):
        meta = {**meta, "options": json.dumps(meta["options"], ensure_ascii=False)}
    return meta


def _snippet(content: str, query: str, width: int = 60) -> str:
    at = content.lower().find(query.lower())
    start = max(0, at - width) if at >= 0 else 0
    text = content[start : start + len(query) + 2 * width].replace("\n", " ")
    return ("…" if start else "") + text + ("…" if start + len(query) + 2 * width < len(content) else "")
