"""Options that several commands share: the model and its sampling, --json, the engine (embedded or
a server's) and the pages allowed to call a server. One place, so each command says the same."""

from __future__ import annotations

import argparse
import os

REMOTE_ENV = {"remote": "NEMO_CHAT_REMOTE", "remote_key": "NEMO_CHAT_REMOTE_KEY",
              "remote_model": "NEMO_CHAT_REMOTE_MODEL"}


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def add_model_options(parser: argparse.ArgumentParser, *, ctx: str | None = "context size in tokens",
                      temperature: bool = False, max_tokens: str | None = None) -> None:
    """--model, and --ctx (with its help) unless `ctx` is None; --temperature if asked; --max-tokens
    with its help when one is given."""
    parser.add_argument("--model", help="GGUF path or catalog name (e.g. smollm2)")
    if ctx is not None:
        parser.add_argument("--ctx", type=int, help=ctx)
    if temperature:
        parser.add_argument("--temperature", type=float, help="sampling temperature (0: always the likeliest token)")
    if max_tokens is not None:
        parser.add_argument("--max-tokens", type=int, help=max_tokens)


def add_json_option(parser: argparse.ArgumentParser, help: str = "print one JSON object") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--remote, --remote-key, --remote-model (defaults from the environment) and --parallel."""
    parser.add_argument("--remote", metavar="URL", default=os.environ.get(REMOTE_ENV["remote"]),
                        help="use an OpenAI-compatible server instead of the embedded engine: its base URL "
                             f"ending in /v1 (also ${REMOTE_ENV['remote']})")
    parser.add_argument("--remote-key", metavar="KEY", default=os.environ.get(REMOTE_ENV["remote_key"]),
                        help=f"the server's API key (better: ${REMOTE_ENV['remote_key']}, not seen by other users)")
    parser.add_argument("--remote-model", metavar="NAME", default=os.environ.get(REMOTE_ENV["remote_model"]),
                        help="the served model's name (default: the first it lists; "
                             f"also ${REMOTE_ENV['remote_model']})")
    parser.add_argument("--parallel", type=_count, metavar="N",
                        help="sequences at once (embedded: 0 = from the GPU plan; "
                             "on a server: requests in flight, default 8)")


def add_origin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="let the pages of this site call the server, e.g. http://localhost:3000 (repeatable; "
                             "also $NEMO_CHAT_ALLOWED_ORIGINS, comma-separated); pages of any other site get 403")


def engine_overrides(args) -> dict:
    """The engine options given on the command line, as settings overrides."""
    return {"remote": args.remote, "remote_key": args.remote_key, "remote_model": args.remote_model,
            "parallel": args.parallel}
