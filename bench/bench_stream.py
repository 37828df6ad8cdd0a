"""Our streaming engine vs raw llama-cpp-python `create_completion(stream=True)`, same model,
same settings, same process, alternating runs. Prints decode tok/s ratio and TTFT difference.

    .venv/bin/python bench/bench_stream.py [--model smollm2] [--runs 5] [--tokens 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from llama_cpp import StoppingCriteriaList

from app.engine.chat_format import TemplateChatFormat
from app.engine.catalog import resolve_model
from app.engine.llama import LlamaEngine
from app.runtime import LoadOptions, SamplingOptions

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def run_ours(engine: LlamaEngine, ids: list[int], tokens: int) -> tuple[float, float, int]:
    engine.llm.reset()
    completion = engine.complete(ids, SamplingOptions(temperature=0.0, max_tokens=tokens))
    completion.text()
    s = completion.stats
    return s.ttft_s, s.tokens_per_s, s.completion_tokens


def run_raw(llm, ids: list[int], tokens: int) -> tuple[float, float, int]:
    llm.reset()
    times: list[float] = []

    def count(_ids, _logits) -> bool:  # called once per sampled token
        times.append(time.perf_counter())
        return False

    started = time.perf_counter()
    for _ in llm.create_completion(prompt=ids, max_tokens=tokens, temperature=0.0, top_k=40, top_p=0.95,
                                   min_p=0.05, repeat_penalty=1.0, stream=True,
                                   stopping_criteria=StoppingCriteriaList([count])):
        pass
    ttft = times[0] - started
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return ttft, rate, len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--ctx", type=int, default=2048)
    args = parser.parse_args()

    engine = LlamaEngine()
    engine.load(LoadOptions(str(resolve_model(args.model)), n_ctx=args.ctx))
    ids = TemplateChatFormat(engine).encode([{"role": "user", "content": PROMPT}])
    run_ours(engine, ids, 16), run_raw(engine.llm, ids, 16)  # warm-up
    ours, raw = [], []
    for i in range(args.runs):  # alternate which goes first, so background load hits both alike
        if i % 2:
            raw.append(run_raw(engine.llm, ids, args.tokens))
        ours.append(run_ours(engine, ids, args.tokens))
        if not i % 2:
            raw.append(run_raw(engine.llm, ids, args.tokens))
    med = lambda rows, i: statistics.median(r[i] for r in rows)  # noqa: E731
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"model {args.model}, prompt {len(ids)} tokens, {args.runs} runs x {args.tokens} tokens")
    print(f"{'':28}{'ours':>10}{'raw':>10}{'ratio':>8}")
    rows = [("decode tok/s (median)", med(ours, 1), med(raw, 1)),
            ("decode tok/s (best)", max(r[1] for r in ours), max(r[1] for r in raw)),
            ("TTFT ms (median)", med(ours, 0) * 1e3, med(raw, 0) * 1e3),
            ("TTFT ms (best)", min(r[0] for r in ours) * 1e3, min(r[0] for r in raw) * 1e3)]
    for name, a, b in rows:
        print(f"{name:28}{a:10.1f}{b:10.1f}{a / b:8.3f}")
    print(f"decode ratio ours/raw (median): {rows[0][1] / rows[0][2]:.3f}, best-of: {rows[1][1] / rows[1][2]:.3f} "
          "(target >= 0.97)")
    print(f"TTFT difference ours-raw (median): {(med(ours, 0) - med(raw, 0)) * 1e3:+.1f} ms")


if __name__ == "__main__":
    main()
