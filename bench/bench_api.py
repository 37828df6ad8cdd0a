"""The OpenAI API on our engine: one client vs 4 at once (aggregate tok/s), and the API's per-token
overhead vs the engine called directly, same model, same process, alternating runs.

    .venv/bin/python bench/bench_api.py [--model smollm2] [--runs 3] [--tokens 200] [--parallel 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import tempfile
import threading
import time

import openai

from app.base.config import Settings
from app.base.jobs import CancelToken
from app.engine.chat_format import chat_format_for
from app.faces.api_server import ApiServer
from app.runtime import SamplingOptions
from app.services.root import Services

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamed_rate(client: openai.OpenAI, tokens: int, prompt: str = PROMPT) -> tuple[int, float, float]:
    """(tokens, first-token time, last-token time) of one streamed API reply."""
    times = []
    for chunk in client.chat.completions.create(model="smollm2", stream=True, max_tokens=tokens, temperature=0,
                                                messages=[{"role": "user", "content": prompt}]):
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    return len(times), times[0], times[-1]


def direct_rate(services: Services, tokens: int) -> float:
    """Decode tok/s of the engine called directly with the same prompt."""
    ids = chat_format_for(services.engine).encode([{"role": "user", "content": PROMPT}])
    completion = services.engine.complete(ids, SamplingOptions(temperature=0.0, top_k=0, min_p=0.0, top_p=1.0,
                                                               max_tokens=tokens), CancelToken())
    completion.text()
    return completion.stats.tokens_per_s


def concurrent_rate(client: openai.OpenAI, clients: int, tokens: int) -> float:
    """Aggregate decode tok/s of `clients` streamed replies at once (tokens over the wall time)."""
    results = []

    def one(i: int) -> None:
        results.append(streamed_rate(client, tokens, f"{PROMPT} Chapter {i + 1}."))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(n for n, _, _ in results) / (max(last for _, _, last in results) - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=0, help="sequences at once (0: the engine's choice)")
    args = parser.parse_args()
    os.environ.setdefault("NEMO_CHAT_HOME", tempfile.mkdtemp(prefix="bench-api-"))
    settings = Settings(model=args.model, n_ctx=args.ctx, temperature=0.0, parallel=args.parallel)
    with Services(settings) as services:
        services.ensure_model()
        server = ApiServer(services, port=free_port()).start()
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)
        try:
            streamed_rate(client, 16), direct_rate(services, 16)  # warm-up
            api, direct = [], []
            for i in range(args.runs):  # alternate which goes first, so background load hits both alike
                if i % 2:
                    direct.append(direct_rate(services, args.tokens))
                n, first, last = streamed_rate(client, args.tokens)
                api.append((n - 1) / (last - first))
                if not i % 2:
                    direct.append(direct_rate(services, args.tokens))
            one = concurrent_rate(client, 1, args.tokens)
            four = concurrent_rate(client, 4, args.tokens)
        finally:
            server.stop()
        parallel = getattr(services.engine, "parallel", 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"model {args.model}, {args.runs} runs x {args.tokens} tokens, engine runs {parallel} sequence(s) at once")
    api_median, direct_median = statistics.median(api), statistics.median(direct)
    print(f"decode tok/s through the API (median) {api_median:8.1f}")
    print(f"decode tok/s engine called directly   {direct_median:8.1f}")
    print(f"API / direct: {api_median / direct_median:.3f} (goal >= 0.95)")
    print(f"aggregate tok/s, 1 client {one:8.1f}; 4 clients at once {four:8.1f}; ratio 4/1: {four / one:.2f}")


if __name__ == "__main__":
    main()
