"""Our engine against llama.cpp's own tools, built from the same vendored llama.cpp with the same
flags (bench/llama_tools.py), same model, same threads, same machine, in one run:

- prompt reading at 512 and 3,500 tokens: our engine (tokens / time to the first token, nothing
  cached) vs `llama-batched-bench -npl 1` (S_PP);
- decode with 1, 2, 4 and 8 sequences at once: our engine (aggregate tok/s while all generate, as
  bench_parallel.py counts it) vs `llama-batched-bench -npp 64 -ntg 128 -npl k` (S_TG);
- the OpenAI API with 1 and 4 streaming clients (the official `openai` client): `nemo-chat serve
  --parallel 4` vs `llama-server -np 4` (tokens over the time from the first to the last token).

Each row runs ours and theirs alternately (the order flips each run), best of `--runs`.

    .venv/bin/python bench/bench_vs_llama_cpp.py [--model smollm2] [--runs 3] [--rows pp,decode,api]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import openai  # noqa: E402

from app.engine.catalog import resolve_model  # noqa: E402
from app.engine.llama import LlamaEngine  # noqa: E402
from app.runtime import LoadOptions, SamplingOptions  # noqa: E402
from bench_parallel import TOPICS, run  # noqa: E402  (k completions at once, aggregate decode tok/s)
from corpora import long_markdown  # noqa: E402
from llama_tools import ensure_tools  # noqa: E402

STRICT_GOAL, GOAL = 0.98, 0.95  # prompt reading and 1-sequence decode; every other row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batched_bench(tools: Path, model: Path, args, npp: int, ntg: int, npl: int) -> dict:
    """One `llama-batched-bench` run; its JSON line."""
    command = [str(tools / "llama-batched-bench"), "-m", str(model), "-c", str(npl * (npp + ntg + 16)),
               "-b", str(args.batch), "-ub", str(args.batch), "-t", str(args.threads), "-tb", str(args.threads),
               "-fa", "off", "-npp", str(npp), "-ntg", str(ntg), "-npl", str(npl), "--output-format", "jsonl"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def alternate(runs: int, ours, theirs) -> tuple[float, float]:
    """Best of `runs` of each, run alternately (the order flips each run)."""
    mine, yours = [], []
    for i in range(runs):
        for side in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
            (mine if side is ours else yours).append(side())
    return max(mine), max(yours)


# -- prompt reading -----------------------------------------------------------------------------
def prompt_rows(tools, model, args, text_ids: list[int]) -> list[tuple[str, float, float]]:
    rows = []
    for n in args.pp:
        engine = LlamaEngine()
        engine.load(LoadOptions(str(model), n_ctx=n + 64, n_batch=args.batch, n_threads=args.threads, parallel=1))
        turn = iter(range(10**6))

        def ours() -> float:
            ids = text_ids[:n]
            ids[0] = text_ids[n + next(turn)]  # a new first token: nothing of it is cached
            completion = engine.complete(ids, SamplingOptions(temperature=0.0, max_tokens=1))
            completion.text()
            return (n - completion.stats.cached_tokens) / completion.stats.ttft_s

        try:
            mine, theirs = alternate(args.runs, ours, lambda: batched_bench(tools, model, args, n, 1, 1)["speed_pp"])
        finally:
            engine.unload()
        rows.append((f"prompt reading, {n:,} tokens (tok/s)", mine, theirs))
    return rows


# -- decode -------------------------------------------------------------------------------------
def decode_rows(tools, model, args) -> list[tuple[str, float, float]]:
    engine = LlamaEngine()
    engine.load(LoadOptions(str(model), n_ctx=512, n_batch=args.batch, n_threads=args.threads,
                            parallel=max(args.npl)))
    rows = []
    try:
        from app.engine.chat_format import chat_format_for

        encode = chat_format_for(engine).encode
        prompts = [encode([{"role": "user", "content": f"Write a long story about {topic}."}]) for topic in TOPICS]
        turn = iter(range(10**6))
        for k in args.npl:
            def ours() -> float:
                shift = next(turn)  # other topics each run: no reply is served from a slot's cache
                return run(engine, [prompts[(i + shift) % len(prompts)] for i in range(k)], args.ntg)[0]

            mine, theirs = alternate(args.runs, ours,
                                     lambda: batched_bench(tools, model, args, 64, args.ntg, k)["speed_tg"])
            rows.append((f"decode, {k} sequence{'s' * (k > 1)} (tok/s{', all' * (k > 1)})", mine, theirs))
    finally:
        engine.unload()
    return rows


# -- the API ------------------------------------------------------------------------------------
def wait_healthy(url: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited ({process.returncode}): {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} did not become healthy")


def streamed(client: openai.OpenAI, model: str, prompt: str, tokens: int) -> list[float]:
    """Arrival times of a streamed chat reply's text chunks."""
    times = []
    for chunk in client.chat.completions.create(model=model, stream=True, max_tokens=tokens, temperature=0,
                                                messages=[{"role": "user", "content": prompt}]):
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    return times


def clients_rate(client: openai.OpenAI, model: str, clients: int, tokens: int, shift: int) -> float:
    """Tokens of `clients` streamed replies at once over the time from the first token to the last."""
    results: list[list[float]] = []

    def one(i: int) -> None:
        results.append(streamed(client, model, f"Write a long story about {TOPICS[(i + shift) % len(TOPICS)]}.",
                                tokens))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, last = min(times[0] for times in results), max(times[-1] for times in results)
    return (sum(len(times) for times in results) - 1) / (last - first)


def api_rows(tools, model, args) -> list[tuple[str, float, float]]:
    ours_port, theirs_port = free_port(), free_port()
    home = tempfile.mkdtemp(prefix="bench-vs-llama-")
    env = {**os.environ, "NEMO_CHAT_HOME": home}
    ours = subprocess.Popen([sys.executable, "-m", "app", "serve", "--model", str(model), "--port", str(ours_port),
                             "--parallel", "4", "--ctx", "1024"], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs = subprocess.Popen([str(tools / "llama-server"), "-m", str(model), "--host", "127.0.0.1",
                               "--port", str(theirs_port), "-np", "4", "-c", str(4 * 1024), "-t", str(args.threads),
                               "-tb", str(args.threads), "-b", str(args.batch), "-ub", str(args.batch), "-fa", "off"],
                              text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows = []
    try:
        wait_healthy(f"http://127.0.0.1:{ours_port}", ours, "nemo-chat serve")
        wait_healthy(f"http://127.0.0.1:{theirs_port}", theirs, "llama-server")
        ours_client = openai.OpenAI(base_url=f"http://127.0.0.1:{ours_port}/v1", api_key="x", max_retries=0, timeout=900)
        theirs_client = openai.OpenAI(base_url=f"http://127.0.0.1:{theirs_port}/v1", api_key="x", max_retries=0,
                                      timeout=900)
        names = {client: client.models.list().data[0].id for client in (ours_client, theirs_client)}
        for client, name in names.items():  # warm-up
            streamed(client, name, "Hi", 8)
        turn = iter(range(10**6))
        for k in args.clients:
            mine, yours = alternate(
                args.runs, lambda: clients_rate(ours_client, names[ours_client], k, args.ntg, next(turn)),
                lambda: clients_rate(theirs_client, names[theirs_client], k, args.ntg, next(turn)))
            rows.append((f"API, {k} streaming client{'s' * (k > 1)} (tok/s{', all' * (k > 1)})", mine, yours))
    finally:
        for process in (ours, theirs):
            process.terminate()
            process.wait(60)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", default="pp,decode,api")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch on both sides")
    parser.add_argument("--pp", default="512,3500", help="prompt lengths")
    parser.add_argument("--npl", default="1,2,4,8", help="sequences at once")
    parser.add_argument("--ntg", type=int, default=128, help="tokens generated per sequence")
    parser.add_argument("--clients", default="1,4", help="streaming API clients at once")
    args = parser.parse_args()
    args.pp, args.npl, args.clients = ([int(x) for x in value.split(",")] for value in (args.pp, args.npl, args.clients))
    tools = ensure_tools(log=lambda line: print(line, file=sys.stderr))
    model = resolve_model(args.model)
    os.environ.setdefault("NEMO_CHAT_HOME", tempfile.mkdtemp(prefix="bench-vs-llama-"))
    started, load_before = time.time(), os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load_before:.2f} at the start; model {model.name}; {args.threads} threads, batch {args.batch}, "
          f"flash attention off on both; best of {args.runs}, alternating; llama.cpp tools in {tools}")
    print("| what | nemo-chat | llama.cpp | ratio | goal |\n|---|---:|---:|---:|---:|", flush=True)
    wanted = args.rows.split(",")
    steps = []
    if "decode" in wanted:
        steps.append(lambda: decode_rows(tools, model, args))
    if "api" in wanted:
        steps.append(lambda: api_rows(tools, model, args))
    if "pp" in wanted:
        probe = LlamaEngine()
        probe.load(LoadOptions(str(model), n_ctx=256, n_threads=args.threads))
        text_ids = probe.tokenize(long_markdown(4000))
        probe.unload()
        steps.append(lambda: prompt_rows(tools, model, args, text_ids))
    for step in steps:
        for name, mine, theirs in step():  # each row as soon as it is measured
            goal = STRICT_GOAL if name.startswith(("prompt", "decode, 1 ")) else GOAL
            mark = "" if mine / theirs >= goal else " (below)"
            print(f"| {name} | {mine:.1f} | {theirs:.1f} | **{mine / theirs:.2f}**{mark} | {goal:.2f} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
