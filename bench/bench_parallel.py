"""Aggregate decode speed of 1, 2, 4 and 8 sequences running at once in the embedded engine (one
llama.cpp context, one `llama_decode` per step over all of them), as ratios to one sequence; then
the wall time of a whole-document summary (map-reduce) and of a document translation with
`--parallel 1` against `--parallel N`.

    .venv/bin/python bench/bench_parallel.py [--model smollm2] [--counts 1,2,4,8] [--tokens 128]
                                             [--fanout 4] [--words 4000] [--sections 12]

Each decode run starts k completions in k threads on the same engine (loaded once with the largest
k). Aggregate decode tok/s counts the tokens that arrive while all k sequences are generating (from
the last first token to the first last token) over that window, so prompt reading is left out.
The fan-out runs load the engine once per setting and start from an empty cache each time, at
temperature 0 (`--fanout 0` skips them).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_translate import long_document  # noqa: E402  (the translation bench's handbook)
from corpora import long_markdown  # noqa: E402  (the summary tests' chronicle)

from app.documents.reading import read_document  # noqa: E402
from app.engine.catalog import resolve_model  # noqa: E402
from app.engine.chat_format import TemplateChatFormat  # noqa: E402
from app.history import History  # noqa: E402
from app.engine.llama import LlamaEngine  # noqa: E402
from app.runtime import LoadOptions, SamplingOptions  # noqa: E402
from app.base.jobs import CancelToken  # noqa: E402
from app.services.summarize import SummaryJob, SummaryOptions  # noqa: E402
from app.services.translate import TranslateOptions, TranslationJob, TranslationRequest  # noqa: E402
from app.storage.document_store import DocumentStore  # noqa: E402

TOPICS = ["a lighthouse keeper", "a lost cat in Paris", "the first day of school", "a storm at sea",
          "a robot learning to paint", "a baker who cannot sleep", "a train across the desert", "an old violin"]


def run(engine: LlamaEngine, prompts: list[list[int]], tokens: int) -> tuple[float, int]:
    """k completions at once; (aggregate decode tok/s while all run, tokens counted)."""
    arrivals: list[list[float]] = [[] for _ in prompts]
    start = threading.Barrier(len(prompts))

    def one(k: int) -> None:
        start.wait()
        for _ in engine.complete(prompts[k], SamplingOptions(temperature=0.0, max_tokens=tokens)).ids():
            arrivals[k].append(time.perf_counter())

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    begin = max(times[0] for times in arrivals)
    end = min(times[-1] for times in arrivals)
    counted = sum(1 for times in arrivals for t in times if begin < t <= end)
    return counted / (end - begin), counted


def fanout_runs(args, width: int) -> dict[str, tuple[float, int, int]]:
    """(wall seconds, engine calls, tokens written) of one summary and one translation on an engine
    with `width` sequences, each from an empty cache."""
    engine = LlamaEngine()
    engine.load(LoadOptions(str(resolve_model(args.model)), n_ctx=args.ctx, parallel=width,
                            n_gpu_layers=args.gpu_layers, n_threads=args.threads))
    times = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chronicle.md"
        path.write_text(long_markdown(args.words), encoding="utf-8")
        store = DocumentStore(History(Path(folder) / "bench.db"))
        document_id, _ = store.add(read_document(path))
        jobs = {"summary": SummaryJob(engine, store, document_id, SummaryOptions("short"),
                                      SamplingOptions(temperature=0.0), CancelToken(), 150),
                "translation": TranslationJob(engine, store, TranslationRequest(long_document(args.sections), "fr", "en"),
                                              TranslateOptions(temperature=0.0, max_tokens=args.tokens))}
        for name, job in jobs.items():
            started = time.perf_counter()
            for _ in job.run():
                pass
            times[name] = time.perf_counter() - started, job.calls.engine_calls, job.calls.finished.written
    engine.unload()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--ctx", type=int, default=1024, help="tokens per sequence")
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: one per CPU)")
    parser.add_argument("--fanout", type=int, default=4, help="sequences for the fan-out runs (0: skip them)")
    parser.add_argument("--words", type=int, default=3000, help="words of the document summarized")
    parser.add_argument("--sections", type=int, default=6, help="sections of the document translated")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    engine = LlamaEngine()
    engine.load(LoadOptions(str(resolve_model(args.model)), n_ctx=args.ctx, parallel=max(counts),
                            n_gpu_layers=args.gpu_layers, n_threads=args.threads))
    fmt = TemplateChatFormat(engine)
    prompts = [fmt.encode([{"role": "user", "content": f"Write a long, detailed story about {topic}."}])
               for topic in TOPICS * (max(counts) // len(TOPICS) + 1)]
    run(engine, prompts[:1], 16)  # warm-up
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"model {args.model}, {args.tokens} tokens a sequence, {args.ctx}-token context each, "
          f"engine loaded with {engine.parallel} sequences, {args.threads or os.cpu_count()} threads")
    base = None
    print(f"{'sequences':>10}{'aggregate tok/s':>18}{'per sequence':>14}{'ratio to 1':>12}{'tokens':>8}")
    for k in counts:
        rate, counted = run(engine, prompts[:k], args.tokens)
        base = base or rate
        print(f"{k:>10}{rate:>18.1f}{rate / k:>14.1f}{rate / base:>12.2f}{counted:>8}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    engine.unload()
    if args.fanout:
        one, many = fanout_runs(args, 1), fanout_runs(args, args.fanout)
        print(f"\nfan-out ({args.words:,}-word chronicle summarized, {args.sections}-section handbook translated "
              f"into French, {args.ctx}-token context each)")
        print(f"{'job':>12}{'calls':>7}{'tokens written':>16}{'--parallel 1':>14}{f'--parallel {args.fanout}':>14}"
              f"{'ratio':>8}")
        for job in one:
            (alone, calls, written), (together, _, written_together) = one[job], many[job]
            print(f"{job:>12}{calls:>7}{f'{written} / {written_together}':>16}{alone:>13.1f}s{together:>13.1f}s"
                  f"{alone / together:>8.2f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
