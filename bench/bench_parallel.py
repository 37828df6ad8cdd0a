"""Aggregate decode speed of 1, 2, 4 and 8 sequences running at once in the embedded engine (one
llama.cpp context, one `llama_decode` per step over all of them), as ratios to one sequence.

    .venv/bin/python bench/bench_parallel.py [--model smollm2] [--counts 1,2,4,8] [--tokens 128]

Each run starts k completions in k threads on the same engine (loaded once with the largest k).
Aggregate decode tok/s counts the tokens that arrive while all k sequences are generating (from
the last first token to the first last token) over that window, so prompt reading is left out.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

from app.engine.catalog import resolve_model
from app.engine.chat_format import TemplateChatFormat
from app.runtime import LlamaEngine, LoadOptions, SamplingOptions

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--ctx", type=int, default=1024, help="tokens per sequence")
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: one per CPU)")
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


if __name__ == "__main__":
    main()
