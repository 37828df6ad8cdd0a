"""Translation pipeline overhead against time in the engine, for a long Markdown document.

    .venv/bin/python bench/bench_translate.py [--model smollm2] [--sections 8] [--max-tokens 48] [--ctx 4096]

One whole TranslationJob on a fresh cache with the real engine: the time inside the engine's
completions (prompt reading and generation) against everything else (Markdown parsing, segment
planning, prompt encoding, cache, putting pieces back, the structure check, saving), and the cost
of rebuilding the side-by-side rows as the UI does after each update. Target: under 10%.
Only the pipeline is measured: NeMo's translation quality can't be measured here without its weights.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from app.storage.document_store import DocumentStore
from app.history import History
from app.engine.catalog import resolve_model
from app.engine.llama import LlamaEngine
from app.runtime import LoadOptions
from app.nemo.tekken import Tekken
from app.services.translate import TranslateOptions, TranslationJob, TranslationRequest

TOPICS = ["the harbour", "the lighthouse", "the weather station", "the ferry timetable", "the fish market"]


def long_document(sections: int) -> str:
    """Headings, paragraphs with inline code and links, lists, tables and code blocks."""
    parts = ["---\ntitle: Harbour handbook\n---\n"]
    for n in range(sections):
        topic = TOPICS[n % len(TOPICS)]
        parts.append(f"## {n + 1}. About {topic}\n")
        parts.append(f"Everything about {topic} is kept in the `handbook-{n}` folder; see "
                     f"[the notes](https://example.com/notes/{n}) before you change anything. The staff of "
                     f"{topic} meet every Monday at nine, and the minutes go to office@example.com.\n")
        parts.append(f"When the wind is strong, {topic} closes early and the boats stay inside the "
                     "breakwater. Visitors are told at the gate and on the radio.\n")
        parts.append("- Check the ropes and the fenders\n- Write the time in the log\n- Tell the harbour master\n")
        if n % 3 == 0:
            parts.append("| Day | Boats | Note |\n|-----|------:|------|\n| Monday | 12 | calm sea |\n"
                         "| Tuesday | 7 | strong wind from the west |\n")
        if n % 4 == 0:
            parts.append(f"```python\ndef log_{n}(entry):\n    return entry.strip()\n```\n")
    return "\n".join(parts)


class TimedEngine:
    """The engine, with the time spent inside its completions added up."""

    def __init__(self, engine: LlamaEngine) -> None:
        self._engine = engine
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def complete(self, *args, **kwargs):
        self.calls += 1
        return TimedCompletion(self._engine.complete(*args, **kwargs), self)


class TimedCompletion:
    def __init__(self, completion, timer: TimedEngine) -> None:
        self._completion, self._timer = completion, timer

    def __getattr__(self, name):
        return getattr(self._completion, name)

    def __iter__(self):
        deltas = iter(self._completion)
        while True:
            started = time.perf_counter()
            try:
                delta = next(deltas)
            except StopIteration:
                return
            finally:
                self._timer.seconds += time.perf_counter() - started
            yield delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--sections", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48, help="cap on one request's reply")
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--to", default="fr")
    args = parser.parse_args()

    engine = LlamaEngine()
    engine.load(LoadOptions(str(resolve_model(args.model)), n_ctx=args.ctx))
    timed = TimedEngine(engine)
    document = long_document(args.sections)
    with tempfile.TemporaryDirectory() as folder:
        history = History(Path(folder) / "bench.db")
        store = DocumentStore(history)
        started = time.perf_counter()
        job = TranslationJob(timed, store, TranslationRequest(document, args.to, "en"),
                             TranslateOptions(temperature=0, max_tokens=args.max_tokens))
        planned = time.perf_counter()
        rows_seconds, rows_calls = 0.0, 0
        for update in job.run():
            if update.segment is None:  # the UI rebuilds the rows after each segment (and while streaming)
                before = time.perf_counter()
                job.rows()
                rows_seconds += time.perf_counter() - before
                rows_calls += 1
        wall = time.perf_counter() - started - rows_seconds
        history.close()

    result = job.result
    overhead = wall - timed.seconds
    print(f"model {engine.info.path.name} · context {args.ctx} · reply cap {args.max_tokens} tokens")
    print(f"document: {len(document):,} characters, {Tekken.default().count(document):,} Tekken tokens, "
          f"{len(job.pieces)} pieces in {result.segments} segments, {timed.calls} engine calls, "
          f"structure kept: {result.structure_kept}")
    print(f"wall {wall:.2f} s · in the engine {timed.seconds:.2f} s · pipeline {overhead:.3f} s "
          f"(planning {planned - started:.3f} s)")
    print(f"pipeline / engine = {overhead / timed.seconds:.2%}   (target < 10%)")
    print(f"pipeline per engine call = {overhead / max(1, timed.calls) * 1000:.1f} ms · "
          f"side-by-side rows rebuilt {rows_calls}× at {rows_seconds / max(1, rows_calls) * 1000:.1f} ms each")


if __name__ == "__main__":
    main()
