"""A question asked of a 100k-token document: Quick (bm25 passages, one call) against Whole (every
chunk through a map call, then a reduce): wall time, document tokens read, share of time in the engine.

    .venv/bin/python bench/bench_ask.py [--model smollm2] [--words 63000] [--ctx 2048] [--parallel 1]

The document is the made-up chronicle of the summary tests and bench (`--words` words, about 103k
Tekken tokens at 63,000), with one planted sentence; the question uses its rare words. Both modes
start from an empty cache. Printed first: the machine (cores, load average before the run); then per
mode: wall seconds, engine seconds and their ratio, chunks read of all, document tokens read, engine
calls, tokens the engine wrote, and whether a source is the planted chunk; last, the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpora import long_markdown  # noqa: E402  (the same made-up document as the tests)

from app.documents.reading import read_document  # noqa: E402
from app.engine.catalog import resolve_model  # noqa: E402
from app.engine.llama import LlamaEngine  # noqa: E402
from app.history import History  # noqa: E402
from app.runtime import LoadOptions, SamplingOptions  # noqa: E402
from app.services.retrieval import ask  # noqa: E402
from app.storage.document_store import DocumentStore  # noqa: E402

PLANTED = "The quartermaster buried the obsidian astrolabe beneath the juniper windmill at Pellucid Cove."
QUESTION = "Where did the quartermaster bury the obsidian astrolabe?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--words", type=int, default=63_000)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()

    print(f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), load average "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1 / 5 / 15 min) before the run")
    engine = LlamaEngine()
    engine.load(LoadOptions(str(resolve_model(args.model)), n_ctx=args.ctx, n_batch=256, parallel=args.parallel))
    with tempfile.TemporaryDirectory() as folder:
        text = long_markdown(args.words)
        middle = len(text) // 2
        path = Path(folder) / "chronicle.md"
        path.write_text(text[:middle] + "\n\n" + PLANTED + "\n\n" + text[middle:], encoding="utf-8")
        document = read_document(path)
        store = DocumentStore(History(Path(folder) / "bench.db"))
        document_id, _ = store.add(document)
        planted = next(n for n, chunk in enumerate(store.chunks(document_id)) if "obsidian astrolabe" in chunk.text)
        print(f"{document.tokens:,} Tekken tokens, {len(document.chunks)} chunks, n_ctx {args.ctx}, "
              f"{args.parallel} sequence(s), {args.model}")
        for whole in (False, True):
            started = time.perf_counter()
            updates = list(ask(engine, store, [document_id], QUESTION, whole, SamplingOptions(temperature=0.0)))
            wall = time.perf_counter() - started
            result, last = updates[-1].result, updates[-1]
            found = any(source.position == planted for source in result.sources)
            print(f"{'Whole' if whole else 'Quick'}: {wall:.1f} s wall, {result.engine_seconds:.1f} s in the engine "
                  f"({result.engine_seconds / wall:.0%}), {result.chunks_read:,} / {result.chunks:,} chunks, "
                  f"{last.tokens_read:,} document tokens read, {result.engine_calls} engine calls, "
                  f"{result.generated_tokens:,} tokens written, planted chunk cited: {found}", flush=True)
    engine.unload()
    print(f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} after the run")


if __name__ == "__main__":
    main()
