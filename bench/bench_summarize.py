"""A whole-document summary far past the context window: pipeline time against time in the engine,
and a resume after Stop against the full run.

    .venv/bin/python bench/bench_summarize.py [--model smollm2] [--words 63000] [--ctx 2048] [--stop-at 12]

The 103k-token scenario that used to be a test (13 minutes on 2 idle cores): a made-up chronicle of
`--words` words, summarized level by level (map, reduce, final) with the real engine. The first run
is stopped as its `--stop-at`th call starts; the second resumes and must do only the missing calls.
Printed: tokens, levels, calls, engine seconds vs wall seconds (the pipeline's share) and the
resumed run's engine calls against all calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpora import long_markdown  # noqa: E402  (the same made-up document as the tests)

from app.base.jobs import Job  # noqa: E402
from app.documents.reading import read_document  # noqa: E402
from app.engine.catalog import resolve_model  # noqa: E402
from app.history import History  # noqa: E402
from app.engine.llama import LlamaEngine  # noqa: E402
from app.runtime import LoadOptions, SamplingOptions  # noqa: E402
from app.services.summarize import SummaryOptions, summarize  # noqa: E402
from app.storage.document_store import DocumentStore  # noqa: E402


class StoppingEngine:
    """The engine, counting calls and their seconds; sets the cancel token as call `stop_at` starts."""

    def __init__(self, engine, stop_at: int | None = None) -> None:
        self.engine, self.stop_at, self.calls = engine, stop_at, 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def complete(self, prompt_ids, sampling, cancel, progress=None, decoder=None):
        self.calls += 1
        if self.calls == self.stop_at:
            cancel.cancel()
        return self.engine.complete(prompt_ids, sampling, cancel, decoder=decoder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--words", type=int, default=63_000)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--stop-at", type=int, default=12)
    args = parser.parse_args()

    engine = LlamaEngine()
    engine.load(LoadOptions(str(resolve_model(args.model)), n_ctx=args.ctx, n_batch=256))
    greedy, options = SamplingOptions(temperature=0.0), SummaryOptions("short")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chronicle.md"
        path.write_text(long_markdown(args.words), encoding="utf-8")
        store = DocumentStore(History(Path(folder) / "bench.db"))
        document = read_document(path)
        document_id, _ = store.add(document)

        stopping = StoppingEngine(engine, args.stop_at)
        started = time.perf_counter()
        stopped = Job(lambda progress, cancel: summarize(stopping, store, document_id, options, greedy, cancel,
                                                         partial_tokens=32)).run()
        first_wall = time.perf_counter() - started
        resumed = StoppingEngine(engine)
        started = time.perf_counter()
        outcome = Job(lambda progress, cancel: summarize(resumed, store, document_id, options, greedy, cancel,
                                                         partial_tokens=32)).run()
        wall = time.perf_counter() - started
    result = outcome.value
    calls = sum(len(level.groups) for level in result.levels)
    print(f"model {engine.model_name} · context {args.ctx} · {document.tokens:,} Tekken tokens "
          f"({document.tokens / args.ctx:.0f}× the context)")
    print(f"levels {[len(level.groups) for level in result.levels]} · {calls} calls")
    print(f"stopped run: {stopping.calls} calls in {first_wall:.0f} s (stopped: {stopped.stopped})")
    print(f"resumed run: {resumed.calls} engine calls of {calls} ({resumed.calls / calls:.0%}) in {wall:.0f} s, "
          f"{result.cached_calls} from the cache")
    print(f"in the engine {result.engine_seconds:.1f} s of {wall:.1f} s: pipeline share "
          f"{(wall - result.engine_seconds) / wall:.2%}")


if __name__ == "__main__":
    main()
