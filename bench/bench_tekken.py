"""Tekken (tiktoken) against llama.cpp's own tokenizer on the same multilingual text.

    .venv/bin/python bench/bench_tekken.py [--mb 4] [--repeat 5]

Counts tokens of the test corpus (NeMo's languages, code, emoji) repeated to about `--mb` MB,
best of `--repeat` runs each, and prints tokens/s, MB/s and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import llama_cpp  # noqa: E402
from tekken_corpus import CORPUS  # noqa: E402

from app.nemo.tekken import Tekken, write_vocab_gguf  # noqa: E402


def best_time(run, repeat: int) -> tuple[float, int]:
    """The fastest of `repeat` runs, and what the run returned."""
    times, result = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="text size in MB (default 4)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tokenizer, best kept (default 5)")
    args = parser.parse_args()

    sample = "\n\n".join(CORPUS.values())
    text = sample * max(1, int(args.mb * 1e6 / len(sample.encode())))
    data = text.encode()
    megabytes = len(data) / 1e6

    started = time.perf_counter()
    tekken = Tekken.default()
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        gguf_path = Path(folder) / "nemo-vocab.gguf"
        write_vocab_gguf(tekken, gguf_path)
        llama = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)

    tekken_s, tekken_tokens = best_time(lambda: tekken.count(text), args.repeat)
    llama_s, llama_tokens = best_time(
        lambda: len(llama.tokenize(data, add_bos=False, special=False)), args.repeat
    )
    llama.close()

    print(f"text: {megabytes:.2f} MB, {len(text):,} characters (corpus x {len(text) // len(sample)})")
    print(f"Tekken vocabulary load: {load_s:.2f} s")
    print(f"{'tokenizer':<22}{'tokens':>12}{'seconds':>10}{'tokens/s':>14}{'MB/s':>9}")
    for name, seconds, tokens in (("Tekken (tiktoken)", tekken_s, tekken_tokens), ("llama.cpp tokenize", llama_s, llama_tokens)):
        print(f"{name:<22}{tokens:>12,}{seconds:>10.3f}{tokens / seconds:>14,.0f}{megabytes / seconds:>9.2f}")
    print(f"speed ratio Tekken / llama.cpp: {llama_s / tekken_s:.2f}x")
    print(f"token count ratio llama.cpp / Tekken: {llama_tokens / tekken_tokens:.4f}")


if __name__ == "__main__":
    main()
