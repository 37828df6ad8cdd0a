"""The command line: argument parsing only; every command calls a plain service.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from app.base.config import HOME_ENV, home_path, load_settings
from app.base.errors import NoRoom, UserError
from app.base.private_files import keep_private, tighten_home
from app.faces.cli_ask import add_ask_parser, run_ask
from app.faces.cli_desktop import add_desktop_parser, run_desktop
from app.faces.cli_history import add_history_commands, run_export, run_import, run_search
from app.faces.cli_models import model_info_text
from app.faces.cli_options import (add_engine_options, add_json_option, add_model_options, add_origin_option,
                                     engine_overrides)
from app.faces.cli_tools import add_tool_commands, run_mcp, run_tools
from app.faces.locale_text import terminal_language, terminal_text, words


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: one line, exit 2
        raise UserError("cli_usage", command=self.prog, problem=message)  # argparse's own words: English


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nemo-chat", description="Local chat with Mistral NeMo on llama.cpp.")
    parser.add_argument("--home", help=f"folder for all state (default: ${HOME_ENV} or the user data folder)")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    ui = commands.add_parser("ui", help="open the web UI (the default command)")
    add_model_options(ui, ctx=None)
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to serve on (default: loopback; any other needs $NEMO_CHAT_TOKEN or --token-file)")
    ui.add_argument("--port", type=int, default=7860)
    ui.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    ui.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="also answer to this Host name, e.g. a DNS name of this machine (repeatable; "
                         "also $NEMO_CHAT_ALLOWED_HOSTS, comma-separated)")
    add_origin_option(ui)
    ui.add_argument("--token-file", metavar="FILE",
                    help="the access token, first line of FILE (default: $NEMO_CHAT_TOKEN); every request "
                         "then needs it (browser login: user nemo, password = the token)")
    ui.add_argument("--api", action="store_true", help="also serve the OpenAI-compatible API at /v1 on the same port")
    add_engine_options(ui)

    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API (/v1) on this machine's engine")
    add_model_options(serve, ctx="context size in tokens per sequence")
    serve.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback; any other "
                                                            "needs --api-key)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", default=os.environ.get("NEMO_CHAT_API_KEY"), metavar="KEY",
                       help="every request but /health needs Authorization: Bearer KEY (default: $NEMO_CHAT_API_KEY)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="also answer to this Host name (repeatable)")
    add_origin_option(serve)
    serve.add_argument("--keep-history", action="store_true", help="keep API chats in the conversation history")
    add_engine_options(serve)

    add_history_commands(commands)

    chat = commands.add_parser("chat", help="ask one question and print the streamed answer")
    chat.add_argument("prompt")
    chat.add_argument("--system", help="system prompt")
    add_model_options(chat, temperature=True, max_tokens="most tokens of the reply")
    add_json_option(chat, "print one JSON object instead of streaming text")
    chat.add_argument("--conversation", metavar="ID|last",
                      help="continue a stored conversation (its id, or `last`: the most recent one)")
    add_engine_options(chat)

    convert = commands.add_parser("convert", help="convert a NeMo checkpoint folder to GGUF")
    convert.add_argument("src_dir", help="a Hugging Face or Mistral-native checkpoint folder")
    convert.add_argument("-o", "--output", required=True, help="the .gguf file to write")
    convert.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m"])
    convert.add_argument("--ctx", type=int, help="context length to record (default: the checkpoint's, at most 131072)")
    convert.add_argument("--force", action="store_true", help="replace the output file if it exists")

    tokens = commands.add_parser("tokens", help="count Tekken tokens of FILE (or stdin)")
    tokens.add_argument("file", nargs="?", help="a UTF-8 text file (default: stdin)")
    tokens.add_argument("--ids", action="store_true", help="print the token ids as a JSON list")
    tokens.add_argument("--model", help="take the Tekken vocabulary from this NeMo GGUF")

    prompt = commands.add_parser("prompt", help="NeMo prompt token ids for an OpenAI-style request")
    prompt.add_argument("conversation", help='a JSON file: {"messages": [...], "tools": [...]}')
    prompt.add_argument("--model", help="take the Tekken vocabulary from this NeMo GGUF")
    _add_model_commands(commands)
    add_desktop_parser(commands)

    summarize = commands.add_parser("summarize", help="summarize whole documents (PDF, DOCX, HTML, Markdown, text)")
    summarize.add_argument("files", nargs="+", metavar="FILE")
    summarize.add_argument("--length", choices=["short", "medium", "long", "bullets"], default="medium")
    summarize.add_argument("--lang", help="language of the summary, e.g. fr (default: the document's)")
    summarize.add_argument("--references", action="store_true", help="cite pages or sections, like [p. 3]")
    add_model_options(summarize, temperature=True)
    add_json_option(summarize, "print one JSON object per file")
    add_engine_options(summarize)

    translate = commands.add_parser("translate", help="translate text or a document, structure kept")
    translate.add_argument("file", nargs="?", metavar="FILE", help="PDF, DOCX, HTML, Markdown or text")
    translate.add_argument("--text", help="translate this text instead of a file")
    translate.add_argument("--to", required=True, help="target language, e.g. fr or French")
    translate.add_argument("--from", dest="source", default="auto", help="source language (default: auto)")
    translate.add_argument("-o", "--output", metavar="OUT", help="write the translation here (default: stdout)")
    translate.add_argument("--glossary", metavar="CSV", help="term pairs: source term, target term")
    translate.add_argument("--plain", action="store_true", help="treat the text as plain text, not Markdown")
    add_model_options(translate, temperature=True, max_tokens="most tokens one request may write")
    add_json_option(translate)
    add_engine_options(translate)
    add_ask_parser(commands)
    add_tool_commands(commands, _Parser)
    return parser


def _add_model_commands(commands) -> None:
    models = commands.add_parser("models", help="list, download or inspect models")
    actions = models.add_subparsers(dest="action", parser_class=_Parser)
    listing = actions.add_parser("list", help="the catalog, the demo model and your own GGUF files (default)")
    add_json_option(listing)
    download = actions.add_parser("download", help="download a catalog model into the Hugging Face cache")
    download.add_argument("name", help="a catalog name, e.g. nemo-q4_k_m")
    info = actions.add_parser("info", help="what a GGUF holds, read from its header (no weights loaded)")
    info.add_argument("path", help="a GGUF path or a catalog name")
    add_json_option(info)

    plan = commands.add_parser("plan", help="how a model fits this machine's GPU: layers, context, K/V cache")
    plan.add_argument("--model", help="GGUF path or catalog name (default: the one in settings)")
    plan.add_argument("--vram", type=float, metavar="GIB", help="plan for a GPU with this much free memory")
    plan.add_argument("--ctx", type=int, help="context size in tokens (default: the largest that fits)")
    plan.add_argument("--kv", choices=["f16", "q8_0", "q4_0"], help="K/V cache type (default: chosen)")
    add_json_option(plan)


def _tekken(model: str | None):
    from app.engine.catalog import resolve_model
    from app.nemo.tekken import Tekken

    return Tekken.from_gguf(resolve_model(model)) if model else Tekken.default()


def _read_text(path: str | None) -> str:
    if path is None:
        return sys.stdin.read()
    try:
        return open(path, encoding="utf-8").read()
    except FileNotFoundError:
        raise UserError("doc_not_found", name=path) from None
    except UnicodeDecodeError:
        raise UserError("import_not_utf8", name=path) from None
    except OSError as exc:
        raise UserError("doc_cannot_read", name=path, reason=exc.strerror) from None


def run_tokens(args) -> int:
    ids = _tekken(args.model).encode(_read_text(args.file))
    print(json.dumps(ids) if args.ids else len(ids))
    return 0


def run_prompt(args) -> int:
    from app.nemo.prompt import encode_request

    try:
        request = json.loads(_read_text(args.conversation))
    except json.JSONDecodeError as exc:
        raise UserError("import_bad_json", name=args.conversation, error=exc.msg, line=exc.lineno,
                        column=exc.colno) from None
    tekken = _tekken(args.model)
    try:
        ids = encode_request(tekken, request)
    except UserError as exc:
        raise UserError("in_file", name=args.conversation, said=exc.message) from None
    print(json.dumps(ids))
    return 0


def _services(args, **overrides):
    """The process's services, with the settings this command overrides."""
    from app.services.root import Services

    return Services(model=getattr(args, "model", None), n_ctx=getattr(args, "ctx", None),
                    temperature=getattr(args, "temperature", None), **engine_overrides(args), **overrides)


def _load_model(services) -> None:
    """Load the model; the engine's notices (a server that takes no token ids) go to stderr once."""
    services.ensure_model()
    for notice in getattr(services.engine, "notices", ()):
        print(f"nemo-chat: {terminal_text('cli_note', note=notice)}", file=sys.stderr)


def run_chat(args) -> int:
    from app.base.jobs import Job
    from app.faces.progress import follow

    with _services(args, system_prompt=args.system, max_tokens=args.max_tokens) as services:
        conversation_id = _conversation_to_continue(services.history, args.conversation)
        _load_model(services)
        job = Job(lambda progress, cancel: services.chat.send(conversation_id, args.prompt, services.settings,
                                                              cancel, progress))
        follow(job, terminal_text("progress_reading"), "tokens", until=lambda j: j.latest is not None)
        shown = 0
        try:
            for _ in job.watch(0.05):
                text = job.latest.text if job.latest is not None else ""
                if not args.json:
                    sys.stdout.write(text[shown:])
                    sys.stdout.flush()
                shown = len(text)
        except KeyboardInterrupt:
            job.stop()
            job.result()  # the reply is saved as stopped
            raise
        job.result()
    last = job.latest
    stats = last.stats
    if args.json:
        print(json.dumps({
            "text": last.text, "conversation_id": last.conversation_id, "status": last.status,
            "prompt_tokens": stats.prompt_tokens, "cached_tokens": stats.cached_tokens,
            "completion_tokens": stats.completion_tokens, "ttft_s": round(stats.ttft_s, 4),
            "tokens_per_s": round(stats.tokens_per_s, 2), "stop_reason": stats.stop_reason,
        }, ensure_ascii=False))
    else:
        print()
    return 0


def _conversation_to_continue(history, wanted: str | None) -> int | None:
    """The conversation `chat --conversation` continues: an id, `last` (the most recently
    updated one), or None for a new conversation."""
    if wanted is None:
        return None
    if wanted == "last":
        newest = history.conversations(limit=1)
        if not newest:
            raise UserError("cli_no_conversation_yet")
        return newest[0]["id"]
    if not wanted.isdigit():
        raise UserError("cli_conversation_id", wanted=wanted)
    conversation = history.conversation(int(wanted))
    if conversation.get("deleted_at") is not None:
        raise UserError("cli_conversation_in_trash", wanted=wanted)
    return conversation["id"]


def run_convert(args) -> int:
    from app.base.jobs import Job
    from app.convert_gguf import convert
    from app.faces.progress import follow

    job = Job(lambda progress, cancel: convert(args.src_dir, args.output, args.outtype, args.ctx, progress, cancel,
                                                    overwrite=args.force))
    outcome = follow(job, "convert", "bytes")
    result = outcome.value
    print(terminal_text("cli_converted", path=str(result.path), outtype=result.outtype, parameters=f"{result.n_params:,}",
                        size=f"{result.size_bytes / 1e9:.2f}", seconds=f"{result.seconds:.1f}"))
    return 0


def run_ui(args) -> int:
    """Serve the UI, or open the one already running on this home."""
    from app.base.config import app_home
    from app.base.instance import InstanceLock

    lock = InstanceLock(app_home())
    host = f"[{args.host}]" if ":" in args.host else args.host
    if (running := lock.running()) is not None or not lock.claim(f"http://{host}:{args.port}/"):
        return _open_running(running or lock.running(), args.no_browser)
    from app.faces.web_guard import read_token
    from app.ui import serve

    try:
        serve(model=args.model, host=args.host, port=args.port, open_browser=not args.no_browser,
              allow_hosts=args.allow_host, token=read_token(args.token_file), api=args.api,
              allow_origins=args.allow_origin, **engine_overrides(args))
    finally:
        lock.release()
    return 0


def _open_running(running, no_browser: bool) -> int:
    if running is None:  # it stopped while this one looked: the next start serves
        raise UserError("cli_start_again")
    print(f"nemo-chat: {terminal_text('cli_already_running', url=running.url)}", flush=True)
    if not no_browser:
        import webbrowser

        webbrowser.open(running.url)
    return 0


def run_models(args) -> int:
    from app.engine import catalog as models

    if args.action == "download":
        from app.base.jobs import Job
        from app.engine.downloads import download
        from app.faces.progress import follow

        outcome = follow(Job(lambda progress, cancel: download(args.name, progress, cancel)), args.name, "bytes")
        if outcome.stopped:
            raise KeyboardInterrupt
        print(outcome.value)
        return 0
    if args.action == "info":
        described = models.describe_gguf(models.resolve_model(args.path))
        print(json.dumps(described) if args.json else model_info_text(described))
        return 0
    from app.engine.gpu_plan import detected_gpu
    from app.engine.memory import free_memory_bytes

    rows = models.model_rows(detected_gpu(), free_memory_bytes())
    if getattr(args, "json", False):
        print(json.dumps(rows, default=str))  # `why` in English
        return 0
    for row in rows:
        status = terminal_text("cli_model_ready" if row["path"] else "cli_model_not_downloaded")
        print(f"{'*' if row['recommended'] else ' '} {row['name']:<14} {row['size_bytes'] / 1e9:5.1f} GB  "
              f"{status:<15} {row['description']}")
    best = next(row for row in rows if row["recommended"])
    print("\n" + terminal_text("cli_recommended", name=best["name"], why=best["why"]))
    print(terminal_text("cli_download_hint"))
    return 0


def run_plan(args) -> int:
    from app.engine.gpu_plan import context_costs, context_label, model_memory, plan_for
    from app.engine.catalog import resolve_model

    path = resolve_model(args.model or load_settings().model)
    plan = plan_for(path, args.vram, args.ctx, args.kv)
    if args.json:
        print(json.dumps(plan.to_json()))
        return 0
    language = terminal_language()
    print(f"{path.name}: {words(language, plan.explanation)}")
    for note in plan.notes:
        print(terminal_text("cli_note", note=note))
    kinds = ("f16", "q8_0", "q4_0")
    print(f"\n{terminal_text('cli_plan_context'):>7}" + "".join(f"{kv + ' K/V':>12}" for kv in kinds))
    for n_ctx, costs in context_costs(model_memory(path)):
        print(f"{context_label(n_ctx):>7}" + "".join(f"{costs[kv] / 2**30:>8.1f} GiB" for kv in kinds))
    return 0


def run_summarize(args) -> int:
    from app.base.jobs import Job
    from app.documents.reading import read_document
    from app.faces.progress import follow
    from app.faces.progress_text import summary_note
    from app.services.summarize import SummaryOptions

    options = SummaryOptions(args.length, args.lang or "", args.references)
    limits = load_settings().parse_limits()
    documents = [read_document(path, **limits) for path in args.files]  # every file is checked before any is stored
    with _services(args) as services:
        _load_model(services)
        for document in documents:
            document_id, _ = services.documents.add(document)
            started = time.monotonic()
            job = Job(lambda progress, cancel: services.summarize(document_id, options, cancel))
            result = follow(job, document.file_name, "calls",
                            lambda j: summary_note(j.latest, terminal_language(), terminal=True) if j.latest else "").value
            if args.json:
                print(json.dumps({
                    "file": document.file_name, "document_id": document_id, "title": document.title,
                    "language": document.language, "pages": document.pages, "summary": result.text,
                    "chunks": result.chunks, "levels": len(result.levels), "document_tokens": result.document_tokens,
                    "engine_calls": result.engine_calls, "cached_calls": result.cached_calls,
                    "generated_tokens": result.generated_tokens, "resumed_tokens": result.resumed_tokens,
                    "engine_seconds": round(result.engine_seconds, 2), "seconds": round(time.monotonic() - started, 2),
                }, ensure_ascii=False))
            else:
                print(f"# {document.title}\n\n{result.text}\n")
    return 0


def run_translate(args) -> int:
    from app.base.jobs import Job
    from app.documents.reading import read_document
    from app.faces.progress import follow
    from app.services.glossary import read_glossary
    from app.base.messages import Message
    from app.services.translate import TranslationRequest, listed, resolve_language

    if (args.file is None) == (args.text is None):
        raise UserError("cli_file_or_text")
    resolve_language(args.to)  # bad languages are refused before the model loads
    resolve_language(args.source, allow_auto=True)
    glossary = read_glossary(args.glossary) if args.glossary else ()
    document = read_document(args.file, **load_settings().parse_limits()) if args.file is not None else None
    with _services(args) as services:
        _load_model(services)
        if document is None:
            request = TranslationRequest(args.text, args.to, args.source, not args.plain, glossary)
        else:
            document_id, _ = services.documents.add(document)
            request = TranslationRequest(document.markdown, args.to, args.source,
                                         not args.plain and document.kind != "text", glossary, document.title, document_id)
        translation = services.translation(request, max_tokens=args.max_tokens or 0)
        calls = lambda _: terminal_text("translate_calls", done=translation.request_count()[0],  # noqa: E731
                                        total=translation.request_count()[1])
        result = follow(Job(lambda progress, cancel: translation.run(cancel)), "translate", "parts", calls).value
    for miss in result.misses:
        where = Message("translate_in_part" if len(miss.segments) == 1 else "translate_in_parts",
                        numbers=listed(list(miss.segments)))
        sys.stderr.write(terminal_text("translate_glossary_miss", source=miss.source, target=miss.target, parts=where) + "\n")
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(result.text)
        except OSError as exc:
            raise UserError("cli_cannot_write", name=args.output, reason=exc.strerror) from None
    if args.json:
        print(json.dumps({
            "translation": result.text, "source_language": result.source_language,
            "target_language": result.target_language, "segments": result.segments,
            "engine_calls": result.engine_calls, "cached_segments": result.cached_segments,
            "glossary_misses": [[m.source, m.target] for m in result.misses],
            "problems": [words(terminal_language(), problem) for problem in result.problems],
            "structure_kept": result.structure_kept, "translation_id": result.translation_id,
        }, ensure_ascii=False))
    elif not args.output:
        print(result.text)
    return 0


def run_serve(args) -> int:
    from app.faces.api_server import ApiServer
    from app.faces.web_guard import allowed_origins

    allowed_origins(args.allow_origin)  # a badly written origin stops here, before the model loads
    with _services(args) as services:
        _load_model(services)
        server = ApiServer(services, args.host, args.port, args.api_key, args.allow_host, args.keep_history,
                           allow_origins=args.allow_origin)
        print(f"nemo-chat: {terminal_text('cli_serving', url=server.url, model=services.engine.model_name)}", flush=True)
        server.run()
    return 0


def _tighten_home() -> None:
    """An existing home made private at start, with one line in the log when anything was open."""
    home = home_path()
    changed = tighten_home(home)
    if changed:
        from app.base.logs import log_notice

        log_notice(f"{home}: {changed} files and folders were open to other users; now for this user only")


COMMANDS = {"ui": run_ui, "serve": run_serve, "export": run_export, "import": run_import, "search": run_search,
            "chat": run_chat, "convert": run_convert, "tokens": run_tokens, "prompt": run_prompt, "models": run_models,
            "plan": run_plan, "summarize": run_summarize, "translate": run_translate, "desktop": run_desktop,
            "ask": lambda args: run_ask(args, _services, _load_model),
            "tools": lambda args: run_tools(args, _services), "mcp": lambda args: run_mcp(args, _services)}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.home:
            os.environ[HOME_ENV] = os.path.abspath(os.path.expanduser(args.home))
        keep_private()
        _tighten_home()
        if args.command is None:
            args = build_parser().parse_args([*(argv if argv is not None else sys.argv[1:]), "ui"])
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"nemo-chat: {words(terminal_language(), exc)}", file=sys.stderr)
        return 1 if isinstance(exc, NoRoom) else 2
    except KeyboardInterrupt:
        print(f"nemo-chat: {terminal_text('cli_interrupted')}", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user, the traceback in the log; NEMO_CHAT_DEBUG=1 shows it here
        if os.environ.get("NEMO_CHAT_DEBUG"):
            raise
        from app.base.logs import log_exception

        log = log_exception("command failed", exc)
        print(f"nemo-chat: {terminal_text('cli_unexpected', error=f'{type(exc).__name__}: {exc}', log=log)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
