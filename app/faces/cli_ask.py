"""`nemo-chat ask QUESTION --doc FILE|ID [--doc …] [--whole] [--json]`: a question answered from
stored documents with checked citations (app/services/retrieval.py). A FILE is read and stored
first, as the Documents tab does; an ID is a stored document's."""

from __future__ import annotations

import json
from pathlib import Path

from app.base.errors import UserError
from app.faces.cli_options import add_engine_options, add_json_option, add_model_options
from app.faces.locale_text import terminal_language, terminal_text, words


def add_ask_parser(commands) -> None:
    ask = commands.add_parser("ask", help="answer a question from documents, with checked page citations")
    ask.add_argument("question")
    ask.add_argument("--doc", action="append", required=True, metavar="FILE|ID",
                     help="a file to read (PDF, DOCX, HTML, Markdown, text) or a stored document's id (repeatable)")
    ask.add_argument("--whole", action="store_true",
                     help="read every chunk of the documents (slower) instead of the best-matching passages")
    add_model_options(ask, temperature=True, max_tokens="most tokens of the answer")
    add_json_option(ask)
    add_engine_options(ask)


def run_ask(args, services_for, load_model) -> int:
    from app.base.config import load_settings
    from app.base.jobs import Job
    from app.documents.reading import read_document
    from app.faces.progress import follow

    if not args.question.strip():
        raise UserError("ask_empty_question")
    limits = load_settings().parse_limits()
    wanted = [(doc, None) if _is_id(doc) else (doc, read_document(doc, **limits)) for doc in args.doc]  # files checked first
    with services_for(args, max_tokens=args.max_tokens) as services:
        ids = [services.documents.add(document)[0] if document else services.documents.document(int(doc))["id"]
               for doc, document in wanted]
        load_model(services)
        job = Job(lambda progress, cancel: services.ask(ids, args.question, args.whole, cancel))
        result = follow(job, "ask", "parts", lambda j: progress_note(j.latest) if j.latest else "").value
    if result.stopped:
        raise KeyboardInterrupt
    if args.json:
        print(json.dumps({"answer": result.answer, "sources": [s.as_json() for s in result.sources],
                          "chunks_read": result.chunks_read, "chunks": result.chunks, "took_s": round(result.took_s, 2),
                          "whole": result.whole, "found": result.found, "engine_calls": result.engine_calls,
                          "cached_calls": result.cached_calls, "engine_seconds": round(result.engine_seconds, 2),
                          "generated_tokens": result.generated_tokens, "resumed_tokens": result.resumed_tokens},
                         ensure_ascii=False))
        return 0
    print(result.answer if result.found else terminal_text("ask_nothing_found"))
    if result.sources:
        print(f"\n{terminal_text('ask_sources')}:")
    for source in result.sources:
        print(f"  {source_line(source)}")
    return 0


def _is_id(doc: str) -> bool:
    return doc.isdigit() and not Path(doc).exists()


def source_line(source) -> str:
    """'[1] report.pdf, p. 7: “the quote”' ('(the passage's own sentence)' when the quote is not the model's)."""
    where = words(terminal_language(), source.where())
    number = f"[{source.number}] " if source.number else "- "
    mark = "" if source.verified else f" ({terminal_text('ask_passage_mark')})"
    return f"{number}{where}: “{source.quote}”{mark}"


def progress_note(update) -> str:
    """'1,200 / 5,400 tokens'."""
    return terminal_text("ask_tokens", read=f"{update.tokens_read:,}", total=f"{update.tokens_total:,}")

