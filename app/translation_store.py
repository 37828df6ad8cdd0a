"""Finished and stopped translations, kept with their source document (migration m004_translations).

One row per (source, format, languages, model, glossary): a resumed or repeated job updates its
row. Deleting a document deletes its translations (ON DELETE CASCADE).
"""

from __future__ import annotations

import time

from .doc_store import DocumentStore
from .errors import UserError

LISTED = ("id, document_id, title, format, source_language, target_language, model, status, segments,"
          " segments_done, created_at, updated_at")
JOB_COLUMNS = ("source_sha256", "format", "source_language", "target_language", "model", "glossary")


def save_translation(store: DocumentStore, record: dict) -> int:
    """Insert or update the row of this job's settings; returns its id."""
    now = time.time()
    record = {**record, "created_at": now, "updated_at": now}
    columns = ", ".join(record)
    updates = ", ".join(f"{c} = excluded.{c}" for c in record if c not in (*JOB_COLUMNS, "created_at"))
    with store.db.conn:
        cursor = store.db.conn.execute(
            f"INSERT INTO translations ({columns}) VALUES ({', '.join('?' * len(record))})"
            f" ON CONFLICT ({', '.join(JOB_COLUMNS)}) DO UPDATE SET {updates} RETURNING id",
            list(record.values()),
        )
        return cursor.fetchone()[0]


def translations(store: DocumentStore, document_id: int | None = None) -> list[dict]:
    """Saved translations without their text, newest first (of one document when given)."""
    where, args = ("WHERE document_id = ?", [document_id]) if document_id is not None else ("", [])
    return [dict(row) for row in store.db.query(
        f"SELECT {LISTED} FROM translations {where} ORDER BY updated_at DESC, id DESC", args)]


def translation(store: DocumentStore, translation_id: int) -> dict:
    """One translation with its text and its source text (the document's, for a document)."""
    rows = list(store.db.query(
        "SELECT t.*, coalesce(d.markdown, t.source_text) AS source FROM translations t"
        " LEFT JOIN documents d ON d.id = t.document_id WHERE t.id = ?", [translation_id]))
    if not rows:
        raise UserError(f"translation {translation_id} not found")
    return rows[0]
