"""The child process of `parse_limits`: caps its own memory, reads one file from stdin with the
reader for its kind, and does all the reading there is (Markdown blocks, chunks, token counts).
It writes JSON lines on stdout as it goes (`reading.read_parts`), or a refusal (a message key and its values)."""

from __future__ import annotations

import json
import sys

from app.base.errors import UserError
from app.base.messages import Message


def _limit_memory(memory_mb: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file of the user's document
    if memory_mb > 0:
        limit = memory_mb * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _child(argv: list[str]) -> int:
    options = json.loads(argv[0])
    data = sys.stdin.buffer.read()
    from app.documents import reading
    from app.nemo.tekken import Tekken

    count = Tekken.default().count  # loaded before the cap: the limit is for reading, not for starting
    kind, name = options["kind"], options["name"]
    if kind == "pdf":
        import pypdf  # noqa: F401  likewise

        reader = lambda: reading._read_pdf(data, name, max_pages=options["max_pages"])
    else:
        reader = lambda: reading.READERS[kind](data, name)
    out = sys.stdout
    _limit_memory(options["memory_mb"])
    try:
        title, pages, parts = reader()
        del data
        for item in reading.read_parts(title, pages, parts, name, count):
            out.write(json.dumps(item) + "\n")
    except MemoryError:
        out.write('{"error": "memory"}\n')
    except UserError as exc:
        out.write(json.dumps({"error": exc.message.to_json()}) + "\n")
    except Exception as exc:  # noqa: BLE001 - a reader bug on odd input: still one line for the user
        out.write(json.dumps({"error": Message("doc_reader_failed", name=name, error=type(exc).__name__).to_json()}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
