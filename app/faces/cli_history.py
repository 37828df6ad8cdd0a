"""The command line's history commands: `export`, `import` and `search` over the saved
conversations. Parsing and printing only; app/services/exchange.py and app/history.py do the work."""

from __future__ import annotations

import json
import sys

from app.base.errors import UserError
from app.faces.cli_options import add_json_option
from app.faces.locale_text import terminal_language, terminal_text, words


def add_history_commands(commands) -> None:
    """The `export`, `import` and `search` subcommands."""
    export = commands.add_parser("export", help="write conversations to a file (every branch kept)")
    export.add_argument("--format", choices=("json", "markdown"), default="json")
    export.add_argument("--conversation", type=int, action="append", metavar="ID", help="only these (repeatable)")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")
    importing = commands.add_parser("import", help="import conversations: nemo-chat JSON, OpenAI messages, "
                                                   "ChatGPT conversations.json, Open WebUI export")
    importing.add_argument("files", nargs="+", metavar="FILE")
    add_json_option(importing)
    search = commands.add_parser("search", help="find messages in the saved conversations (every language)")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=20)
    add_json_option(search)


def _history():
    from app.base.config import database_path
    from app.history import History

    return History(database_path())


def run_export(args) -> int:
    from app.services.exchange import export_json, export_markdown

    history = _history()
    try:
        if args.format == "json":
            text = json.dumps(export_json(history, args.conversation), ensure_ascii=False, indent=1) + "\n"
        else:
            text = export_markdown(history, args.conversation, lambda said: words(terminal_language(), said))
    finally:
        history.close()
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UserError("cli_cannot_write", name=args.output, reason=exc.strerror) from None
    return 0


def run_import(args) -> int:
    from pathlib import Path

    from app.services.exchange import import_files

    history = _history()
    try:
        result = import_files(history, [Path(f) for f in args.files])
    finally:
        history.close()
    for note in result.notes:
        print(f"nemo-chat: {terminal_text('cli_import_skipped', note=note)}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(terminal_text("history_imported", conversations=result.conversations, messages=result.messages,
                            skipped=result.skipped))
    return 0


def run_search(args) -> int:
    import time

    history = _history()
    try:
        started = time.perf_counter()
        hits = history.search(args.query, args.limit)
        took_ms = (time.perf_counter() - started) * 1000
    finally:
        history.close()
    if args.json:
        print(json.dumps({"hits": [{"conversation_id": h.conversation_id, "message_id": h.message_id,
                                    "title": h.conversation_title, "snippet": h.snippet} for h in hits],
                          "took_ms": round(took_ms, 2)}, ensure_ascii=False))
    else:
        for h in hits:
            title = h.conversation_title or terminal_text("chat_untitled")
            print(f"{h.conversation_id}:{h.message_id}  {title}  {h.snippet}")
    return 0
