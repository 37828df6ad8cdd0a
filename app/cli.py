"""The command line: argument parsing only; every command calls a plain service.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from .config import HOME_ENV, load_settings
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: one line, exit 2
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nemo-chat", description="Local chat with Mistral NeMo on llama.cpp.")
    parser.add_argument("--home", help=f"folder for all state (default: ${HOME_ENV} or the user data folder)")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    ui = commands.add_parser("ui", help="open the web UI (the default command)")
    ui.add_argument("--model", help="GGUF path or catalog name (e.g. smollm2)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=7860)
    ui.add_argument("--no-browser", action="store_true", help="do not open a browser tab")

    chat = commands.add_parser("chat", help="ask one question and print the streamed answer")
    chat.add_argument("prompt")
    chat.add_argument("--model", help="GGUF path or catalog name (e.g. smollm2)")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--ctx", type=int, help="context size in tokens")
    chat.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    return parser


def run_chat(args) -> int:
    from .chat import ChatService
    from .config import database_path
    from .history import History
    from .runtime import Engine

    settings = load_settings()
    overrides = {"model": args.model, "system_prompt": args.system, "max_tokens": args.max_tokens,
                 "temperature": args.temperature, "n_ctx": args.ctx}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    service = ChatService(History(database_path()), Engine())
    last = None
    for update in service.send(None, args.prompt, settings):
        if not args.json:
            sys.stdout.write(update.text[len(last.text) if last else 0 :])
            sys.stdout.flush()
        last = update
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


def run_ui(args) -> int:
    from .ui import serve

    serve(model=args.model, host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0


COMMANDS = {"ui": run_ui, "chat": run_chat}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.home:
            os.environ[HOME_ENV] = os.path.abspath(os.path.expanduser(args.home))
        if args.command is None:
            args = build_parser().parse_args([*(argv if argv is not None else sys.argv[1:]), "ui"])
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"nemo-chat: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nemo-chat: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; NEMO_CHAT_DEBUG=1 shows the traceback
        if os.environ.get("NEMO_CHAT_DEBUG"):
            raise
        print(f"nemo-chat: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
