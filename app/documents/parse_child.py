"""The child process of `parse_limits`: caps its own memory, reads one file from stdin with the
reader for its kind, and writes one JSON object on stdout (the parts, or a one-line refusal)."""

from __future__ import annotations

import json
import sys

from app.base.errors import UserError

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
    from dataclasses import asdict

    options = json.loads(argv[0])
    data = sys.stdin.buffer.read()
    from app.documents import reading

    kind, name = options["kind"], options["name"]
    if kind == "pdf":
        import pypdf  # noqa: F401  imported before the cap: the limit is for reading, not for starting

        reader = lambda: reading._read_pdf(data, name, max_pages=options["max_pages"])
    else:
        reader = lambda: reading.READERS[kind](data, name)
    _limit_memory(options["memory_mb"])
    try:
        title, pages, parts = reader()
        answer = json.dumps({"title": title, "pages": pages, "parts": [asdict(part) for part in parts]})
    except MemoryError:
        answer = '{"error": "memory"}'
    except UserError as exc:
        answer = json.dumps({"error": str(exc)})
    except Exception as exc:  # noqa: BLE001 - a reader bug on odd input: still one line for the user
        answer = json.dumps({"error": f"{name}: cannot read this file ({type(exc).__name__})"})
    sys.stdout.write(answer)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
