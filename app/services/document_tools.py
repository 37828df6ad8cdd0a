"""nemo-chat's own long-document tools as plain jobs, for other agents (the MCP face serves them).

Each is `work(progress, cancel)`-shaped through `functools.partial`: the streaming ones are
generators whose updates carry `progress` and whose return value is a JSON-able result. They use
the same services, and so the same caches, as the page and the CLI: a summary or a translation
asked again only does what is not cached yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.documents.reading import read_document
from app.services.summarize import SummaryOptions
from app.services.translate import AUTO, TranslationRequest, resolve_language

if TYPE_CHECKING:
    from app.services.root import Services

MAX_HITS = 50


def summarize_document(services: "Services", path: str, length: str = "medium", language: str = "",
                       cancel: CancelToken | None = None) -> Iterator:
    """Summarize a whole file (PDF, DOCX, HTML, Markdown, text), however long."""
    document = read_document(path, **services.settings.parse_limits(), cancel=cancel)
    document_id, _ = services.documents.add(document)
    result = yield from services.summarize(document_id, SummaryOptions(length, language or ""), cancel)
    return {"summary": result.text, "stopped": result.stopped, "title": document.title,
            "document_language": document.language, "document_tokens": result.document_tokens,
            "chunks": result.chunks, "levels": len(result.levels), "engine_calls": result.engine_calls,
            "cached_calls": result.cached_calls}


def translate_text(services: "Services", text: str, to: str, source: str = AUTO,
                   cancel: CancelToken | None = None) -> Iterator:
    """Translate text (Markdown kept) into `to`."""
    request = TranslationRequest(text, resolve_language(to), resolve_language(source or AUTO, allow_auto=True))
    result = yield from services.translation(request).run(cancel)
    return _translated(result)


def translate_document(services: "Services", path: str, to: str, out_path: str = "",
                       cancel: CancelToken | None = None) -> Iterator:
    """Translate a file, structure kept; written to `out_path` (a new file) when given."""
    target = resolve_language(to)
    out = Path(out_path).expanduser() if out_path else None
    if out is not None and out.exists():
        raise UserError("tools_output_exists", path=str(out))
    if out is not None and not out.parent.is_dir():
        raise UserError("tools_no_such_folder", path=str(out.parent))
    document = read_document(path, **services.settings.parse_limits(), cancel=cancel)
    document_id, _ = services.documents.add(document)
    request = TranslationRequest(document.markdown, target, AUTO, document.kind != "text", (), document.title,
                                 document_id)
    result = yield from services.translation(request).run(cancel)
    reply = _translated(result)
    if out is not None and not result.stopped:
        tmp = out.with_name(out.name + ".part")
        tmp.write_text(result.text, encoding="utf-8")
        os.replace(tmp, out)
        reply = {**reply, "translation": "", "out_path": str(out)}
    return reply


def _translated(result) -> dict:
    return {"translation": result.text, "stopped": result.stopped, "source_language": result.source_language,
            "target_language": result.target_language, "segments": result.segments,
            "engine_calls": result.engine_calls, "cached_segments": result.cached_segments}


def ask_document(services: "Services", question: str, paths: list[str], whole: bool = False,
                 cancel: CancelToken | None = None) -> Iterator:
    """Answer a question from files, with checked citations (retrieval; `whole`: read every chunk)."""
    if not paths:
        raise UserError("tools_give_a_document")
    documents = [read_document(path, **services.settings.parse_limits(), cancel=cancel) for path in paths]
    ids = [services.documents.add(document)[0] for document in documents]
    result = None
    for update in services.ask(ids, question, whole, cancel):
        result = update.result or result
        yield update
    return {"answer": result.answer, "found": result.found, "stopped": result.stopped,
            "sources": [source.as_json() for source in result.sources], "chunks_read": result.chunks_read,
            "chunks": result.chunks, "engine_calls": result.engine_calls, "cached_calls": result.cached_calls}


def search_history(services: "Services", query: str, limit: int = 10) -> dict:
    """Messages of the saved conversations where `query` is found (every language)."""
    if not query.strip():
        raise UserError("tools_empty_query")
    hits = services.history.search(query, max(1, min(int(limit), MAX_HITS)))
    return {"query": query, "hits": [{"conversation_id": h.conversation_id, "message_id": h.message_id,
                                      "title": h.conversation_title, "snippet": h.snippet} for h in hits]}
