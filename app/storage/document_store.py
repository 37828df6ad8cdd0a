"""Documents, their chunks and summaries, translations and the generic result cache, in the
history database (migrations m003_documents, m004_translations and m005_chunk_search in history.py).

The store shares History's one connection; each write that belongs together (a document and its
chunks; a document and what was made from it) is one transaction.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.base.errors import UserError
from app.base.messages import Message
if TYPE_CHECKING:
    from app.history import History

LISTED = "id, title, file_name, kind, pages, language, tokens, sha256, created_at"
TRANSLATION_LISTED = ("id, document_id, title, format, source_language, target_language, model, status, segments,"
                      " segments_done, created_at, updated_at")
TRANSLATION_JOB = ("source_sha256", "format", "source_language", "target_language", "model", "glossary")
CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff"  # CJK: runs are matched as trigrams


@dataclass(frozen=True)
class Chunk:
    """A piece of a document in Markdown, with where it comes from."""

    text: str
    tokens: int = 0
    page_start: int | None = None
    page_end: int | None = None
    section: str = ""

    def reference(self) -> Message | None:
        """Where the chunk is: 'p. 3', 'pp. 3-5' or '§ Heading' (None when the format has neither)."""
        return reference(self.page_start, self.page_end, self.section)


def reference(page_start: int | None, page_end: int | None, section: str) -> Message | None:
    """'p. 3', 'pp. 3-5' or '§ Heading' as a key the faces word (str(): English, as prompts cite it);
    None without a page or a section."""
    if page_start is not None:
        if page_end not in (None, page_start):
            return Message("doc_reference_pages", first=page_start, last=page_end)
        return Message("doc_reference_page", page=page_start)
    return Message("doc_reference_section", section=section) if section else None


@dataclass(frozen=True)
class Document:
    """A file read into Markdown and cut into chunks: what the store keeps of it."""

    sha256: str
    file_name: str
    kind: str
    title: str
    pages: int | None
    language: str
    tokens: int  # Tekken tokens of the whole Markdown text
    markdown: str
    chunks: list[Chunk]


@dataclass(frozen=True)
class Removed:
    """A deleted document and everything made from it: table -> rows, in the order to put them back."""

    file_name: str
    rows: dict[str, list[dict]]


def _made_from(document_id: int, sha256: str) -> list[tuple[str, str, object]]:
    """(table, column, value) of a document's rows, parents first."""
    return [("documents", "id", document_id), ("chunks", "document_id", document_id),
            ("summaries", "document_id", document_id), ("translations", "document_id", document_id),
            ("cached_results", "source", sha256)]


class DocumentStore:
    """Documents stored once by SHA-256; safe to share between threads."""

    def __init__(self, history: History) -> None:
        self.database = history.database
        self.db = history.db

    # -- documents -------------------------------------------------------------------------------
    def add(self, document: Document) -> tuple[int, bool]:
        """Store a document and its chunks unless its content is stored already: (id, newly added)."""
        with self.database.transaction() as conn:
            row = conn.execute("SELECT id FROM documents WHERE sha256 = ?", [document.sha256]).fetchone()
            if row:
                return row[0], False
            document_id = conn.execute(
                "INSERT INTO documents (sha256, title, file_name, kind, pages, language, tokens, markdown,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [document.sha256, document.title, document.file_name, document.kind, document.pages,
                 document.language, document.tokens, document.markdown, time.time()],
            ).lastrowid
            conn.executemany(
                "INSERT INTO chunks (document_id, position, text, tokens, page_start, page_end, section)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(document_id, n, c.text, c.tokens, c.page_start, c.page_end, c.section)
                 for n, c in enumerate(document.chunks)],
            )
            return document_id, True

    def documents(self) -> list[dict]:
        """Every document without its text, newest first."""
        with self.database.lock:
            return [dict(r) for r in self.db.query(f"SELECT {LISTED} FROM documents ORDER BY id DESC")]

    def find(self, query: str = "") -> list[dict]:
        """Every document without its text, newest first; with `query`, those whose file name or title
        holds it, or whose text holds any of its words (FTS5)."""
        documents = self.documents()
        needle = query.strip().lower()
        if not needle:
            return documents
        match = _match_query(query)
        with self.database.lock:
            found = {row[0] for row in self.db.execute(
                "SELECT DISTINCT c.document_id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid"
                " WHERE chunks_fts MATCH ?", [match])} if match else set()
        return [d for d in documents if d["id"] in found or needle in d["file_name"].lower() or needle in d["title"].lower()]

    def document(self, document_id: int) -> dict:
        """One document with its Markdown text."""
        with self.database.lock:
            rows = list(self.db.query("SELECT * FROM documents WHERE id = ?", [document_id]))
        if not rows:
            raise UserError("storage_document_not_found", id=document_id)
        return rows[0]

    def chunks(self, document_id: int) -> list[Chunk]:
        """The document's chunks in order (list index = chunk position)."""
        with self.database.lock:
            rows = list(self.db.query("SELECT text, tokens, page_start, page_end, section FROM chunks"
                                      " WHERE document_id = ? ORDER BY position", [document_id]))
        return [Chunk(**row) for row in rows]

    def related_chunks(self, document_id: int, question: str, limit: int | None = None) -> list[int]:
        """Chunk positions, those matching `question` first by FTS5 bm25 (best first), then the
        others in document order."""
        query = _match_query(question)
        with self.database.lock:
            ranked = [row[0] for row in self.db.execute(
                "SELECT c.position FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid"
                " WHERE chunks_fts MATCH ? AND c.document_id = ? ORDER BY bm25(chunks_fts), c.position",
                [query, document_id])] if query else []
            every = [row[0] for row in self.db.execute(
                "SELECT position FROM chunks WHERE document_id = ? ORDER BY position", [document_id])]
        seen = set(ranked)
        return (ranked + [p for p in every if p not in seen])[:limit]

    def matching_chunks(self, document_ids: list[int], question: str, limit: int = 200) -> list[tuple[int, int, float]]:
        """(document id, chunk position, relevance) of the chunks of these documents that match
        `question`, best first by FTS5 bm25 (one ranking across all of them; relevance = -bm25 > 0)."""
        query = _match_query(question)
        if not query or not document_ids:
            return []
        marks = ", ".join("?" * len(document_ids))
        with self.database.lock:
            return [(row[0], row[1], -row[2]) for row in self.db.execute(
                "SELECT c.document_id, c.position, bm25(chunks_fts) FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid"
                f" WHERE chunks_fts MATCH ? AND c.document_id IN ({marks}) ORDER BY bm25(chunks_fts), c.document_id,"
                " c.position LIMIT ?", [query, *document_ids, limit])]

    def delete(self, document_id: int) -> Removed:
        """Delete a document with its chunks, summaries, translations and every cached result made from
        it; returns all of it, for `restore` (an undo)."""
        with self.database.transaction() as conn:
            document = self.document(document_id)
            rows = {table: list(self.db.query(f"SELECT * FROM {table} WHERE {column} = ?", [value]))
                    for table, column, value in _made_from(document_id, document["sha256"])}
            conn.execute("DELETE FROM cached_results WHERE source = ?", [document["sha256"]])
            conn.execute("DELETE FROM documents WHERE id = ?", [document_id])
        return Removed(document["file_name"], rows)

    def restore(self, removed: Removed) -> int:
        """Put a deleted document back as it was, with its id; returns the id. UserError when the same
        file was added again meanwhile."""
        [document] = removed.rows["documents"]
        with self.database.transaction() as conn:
            if conn.execute("SELECT 1 FROM documents WHERE sha256 = ?", [document["sha256"]]).fetchone():
                raise UserError("storage_document_back_already", name=removed.file_name)
            for table, rows in removed.rows.items():
                for row in rows:
                    conn.execute(f"INSERT OR IGNORE INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                 list(row.values()))
        return document["id"]

    # -- the result cache (kinds: 'summary', 'translation', ...) ------------------------------------
    def cached(self, key: str) -> str | None:
        with self.database.lock:
            row = self.db.execute("SELECT value FROM cached_results WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def put_cached(self, key: str, kind: str, value: str, source: str = "") -> None:
        """Keep one result; `source` is the SHA-256 of the document it was made from."""
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO cached_results (key, kind, value, source, created_at) VALUES (?, ?, ?, ?, ?)",
                [key, kind, value, source, time.time()],
            )

    def forget_cached(self, key: str) -> None:
        """Drop one kept result (a call's partial output once the call is finished)."""
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM cached_results WHERE key = ?", [key])

    # -- summaries -------------------------------------------------------------------------------
    def save_summary(self, document_id: int, model: str, options: dict, text: str, chunks: int, levels: int) -> int:
        """Keep a finished summary with its document (one per model and options)."""
        values = [document_id, model, json.dumps(options, sort_keys=True), text, chunks, levels, time.time()]
        with self.database.transaction() as conn:
            return conn.execute(
                "INSERT INTO summaries (document_id, model, options, text, chunks, levels, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (document_id, model, options) DO UPDATE SET"
                " text = excluded.text, chunks = excluded.chunks, levels = excluded.levels,"
                " created_at = excluded.created_at RETURNING id",
                values,
            ).fetchone()[0]

    def summaries(self, document_id: int) -> list[dict]:
        """The document's summaries, newest first; `options` decoded."""
        with self.database.lock:
            rows = list(self.db.query("SELECT * FROM summaries WHERE document_id = ? ORDER BY created_at DESC,"
                                      " id DESC", [document_id]))
        return [{**row, "options": json.loads(row["options"])} for row in rows]

    # -- translations (one row per source, format, languages, model and glossary) -----------------
    def save_translation(self, record: dict) -> int:
        """Insert or update the row of this job's settings (a resumed or repeated job); returns its id."""
        now = time.time()
        record = {**record, "created_at": now, "updated_at": now}
        columns = ", ".join(record)
        updates = ", ".join(f"{c} = excluded.{c}" for c in record if c not in (*TRANSLATION_JOB, "created_at"))
        with self.database.transaction() as conn:
            return conn.execute(
                f"INSERT INTO translations ({columns}) VALUES ({', '.join('?' * len(record))})"
                f" ON CONFLICT ({', '.join(TRANSLATION_JOB)}) DO UPDATE SET {updates} RETURNING id",
                list(record.values()),
            ).fetchone()[0]

    def translations(self, document_id: int | None = None) -> list[dict]:
        """Saved translations without their text, newest first (of one document when given)."""
        where, args = ("WHERE document_id = ?", [document_id]) if document_id is not None else ("", [])
        with self.database.lock:
            return [dict(row) for row in self.db.query(
                f"SELECT {TRANSLATION_LISTED} FROM translations {where} ORDER BY updated_at DESC, id DESC", args)]

    def translation(self, translation_id: int) -> dict:
        """One translation with its text and its source text (the document's, for a document)."""
        with self.database.lock:
            rows = list(self.db.query(
                "SELECT t.*, coalesce(d.markdown, t.source_text) AS source FROM translations t"
                " LEFT JOIN documents d ON d.id = t.document_id WHERE t.id = ?", [translation_id]))
        if not rows:
            raise UserError("storage_translation_not_found", id=translation_id)
        return rows[0]


def _match_query(question: str) -> str:
    """An FTS5 query that matches any of the question's words: each word of 3+ characters as a
    quoted phrase, runs of CJK characters (no spaces between words) as their trigrams; '' if none."""
    terms: list[str] = []
    for word in re.findall(r"\w+", question.lower()):
        for part in re.findall(f"[{CJK}]+|[^{CJK}]+", word):
            if re.match(f"[{CJK}]", part):
                terms += [part[i : i + 3] for i in range(len(part) - 2)]
            elif len(part) >= 3:
                terms.append(part)
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in dict.fromkeys(terms))
