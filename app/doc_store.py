"""Documents, their chunks and summaries, and the generic result cache, in the history database.

The tables come from migration m003_documents (history.py). The store has its own connection, so
a document and its chunks are written in one transaction whatever other threads do.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import sqlite_utils

from .documents import Chunk, Document
from .errors import UserError
from .history import History

LISTED = "id, title, file_name, kind, pages, language, tokens, sha256, created_at"


class DocumentStore:
    """Documents stored once by SHA-256; safe to share between threads."""

    def __init__(self, history: History) -> None:
        conn = sqlite3.connect(history.path, check_same_thread=False, timeout=30)  # migrated by History
        conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.Lock()

    # -- documents -------------------------------------------------------------------------------
    def add(self, document: Document) -> tuple[int, bool]:
        """Store a document and its chunks unless its content is stored already: (id, newly added)."""
        with self._lock:
            row = self.db.execute("SELECT id FROM documents WHERE sha256 = ?", [document.sha256]).fetchone()
            if row:
                return row[0], False
            with self.db.conn:
                cursor = self.db.conn.execute(
                    "INSERT INTO documents (sha256, title, file_name, kind, pages, language, tokens, markdown,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [document.sha256, document.title, document.file_name, document.kind, document.pages,
                     document.language, document.tokens, document.markdown, time.time()],
                )
                document_id = cursor.lastrowid
                self.db.conn.executemany(
                    "INSERT INTO chunks (document_id, position, text, tokens, page_start, page_end, section)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(document_id, n, c.text, c.tokens, c.page_start, c.page_end, c.section)
                     for n, c in enumerate(document.chunks)],
                )
            return document_id, True

    def documents(self) -> list[dict]:
        """Every document without its text, newest first."""
        return [dict(r) for r in self.db.query(f"SELECT {LISTED} FROM documents ORDER BY id DESC")]

    def document(self, document_id: int) -> dict:
        """One document with its Markdown text."""
        rows = list(self.db.query("SELECT * FROM documents WHERE id = ?", [document_id]))
        if not rows:
            raise UserError(f"document {document_id} not found")
        return rows[0]

    def chunks(self, document_id: int) -> list[Chunk]:
        rows = self.db.query("SELECT text, tokens, page_start, page_end, section FROM chunks"
                             " WHERE document_id = ? ORDER BY position", [document_id])
        return [Chunk(**row) for row in rows]

    def delete(self, document_id: int) -> None:
        """Delete a document with its chunks, summaries and every cached result made from it."""
        sha256 = self.document(document_id)["sha256"]
        with self._lock, self.db.conn:
            self.db.conn.execute("DELETE FROM cached_results WHERE source = ?", [sha256])
            self.db.conn.execute("DELETE FROM documents WHERE id = ?", [document_id])

    # -- the result cache (kinds: 'summary', 'translation', ...) ------------------------------------
    def cached(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM cached_results WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def put_cached(self, key: str, kind: str, value: str, source: str = "") -> None:
        """Keep one result; `source` is the SHA-256 of the document it was made from."""
        with self._lock, self.db.conn:
            self.db.conn.execute(
                "INSERT OR REPLACE INTO cached_results (key, kind, value, source, created_at) VALUES (?, ?, ?, ?, ?)",
                [key, kind, value, source, time.time()],
            )

    # -- summaries -------------------------------------------------------------------------------
    def save_summary(self, document_id: int, model: str, options: dict, text: str, chunks: int, levels: int) -> int:
        """Keep a finished summary with its document (one per model and options)."""
        values = [document_id, model, json.dumps(options, sort_keys=True), text, chunks, levels, time.time()]
        with self._lock, self.db.conn:
            cursor = self.db.conn.execute(
                "INSERT INTO summaries (document_id, model, options, text, chunks, levels, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (document_id, model, options) DO UPDATE SET"
                " text = excluded.text, chunks = excluded.chunks, levels = excluded.levels,"
                " created_at = excluded.created_at RETURNING id",
                values,
            )
            return cursor.fetchone()[0]

    def summaries(self, document_id: int) -> list[dict]:
        """The document's summaries, newest first; `options` decoded."""
        rows = self.db.query("SELECT * FROM summaries WHERE document_id = ? ORDER BY created_at DESC, id DESC",
                             [document_id])
        return [{**row, "options": json.loads(row["options"])} for row in rows]
