"""NeMo 12B speed on an NVIDIA GPU at full offload, against the memory-bandwidth bound.

    bench/gpu/run.sh [--layers 40] [--contexts 8192,32768] [--out results.json]

Steps (each timed): write a checkpoint with NeMo 12B's shapes and random bf16 weights (the one
bench/bench_convert.py writes: 40 layers, embeddings tied), convert and quantize it to Q4_K_M
with app.convert_gguf, make the GPU plan for it, load it with app.engine.llama's LlamaEngine with every
layer on the GPU, then measure prompt tokens/s at each context, decode tokens/s, and the GPU
memory used. The decode bound is the GPU's memory bandwidth over the bytes of weights read per
token (see `streamed_bytes`).

`--shape tiny` runs the same steps on bench/tiny_nemo.py's toy NeMo: the test suite runs it on
the CPU (the CPU-side steps, no GPU needed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from app.convert_gguf import convert  # noqa: E402
from app.engine.gpu_plan import detect_gpu, model_memory, plan_for  # noqa: E402
from app.engine.llama import LlamaEngine  # noqa: E402
from app.engine.memory import gpu_offload_supported  # noqa: E402
from app.runtime import LoadOptions, SamplingOptions  # noqa: E402

FIRST_ORDINARY_ID = 1000  # Tekken: ids below are control tokens


def write_checkpoint(folder: Path, shape: str, layers: int) -> None:
    if shape == "nemo":
        from bench_convert import write_checkpoint as write_nemo

        write_nemo(folder, layers)
    else:
        from tiny_nemo import Tiny, make_weights, write_hf

        cfg = Tiny(n_layers=layers)
        write_hf(folder, make_weights(cfg), cfg)


def bandwidth_bytes_per_s() -> float | None:
    """Peak memory bandwidth of GPU 0 from NVML: memory clock x bus width x 2 (double data rate)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
        return mhz * 1e6 * bits / 8 * 2
    except Exception:  # no NVML, no GPU
        return None


def streamed_bytes(gguf_path: Path) -> int:
    """Weight bytes a decoded token reads: the blocks and the output layer (the embeddings again
    when they are tied), not the token embeddings, of which it reads one row."""
    mem = model_memory(gguf_path)
    return mem.weights_bytes - mem.input_bytes


def decode_bound(bandwidth: float, weights: int) -> float:
    """The most tokens a second one sequence can decode when each token reads `weights` bytes
    at `bandwidth` bytes a second."""
    return bandwidth / weights


def measure(engine: LlamaEngine, n_vocab: int, contexts: list[int], decode_tokens: int) -> dict:
    rng = np.random.default_rng(0)
    engine.complete(rng.integers(FIRST_ORDINARY_ID, n_vocab, 64).tolist(), SamplingOptions(max_tokens=4)).text()  # warm-up
    prompt = {}
    for n in contexts:
        ids = rng.integers(FIRST_ORDINARY_ID, n_vocab, n).tolist()
        done = engine.complete(ids, SamplingOptions(max_tokens=1, temperature=0.0))
        done.text()
        prompt[str(n)] = round(done.stats.evaluated_tokens / done.stats.ttft_s, 1)
    ids = rng.integers(FIRST_ORDINARY_ID, n_vocab, 16).tolist()
    done = engine.complete(ids, SamplingOptions(max_tokens=decode_tokens, temperature=0.0))
    done.text()
    return {"prompt_tokens_per_s": prompt, "decode_tokens_per_s": round(done.stats.tokens_per_s, 2),
            "decode_tokens": done.stats.completion_tokens}


def run(args) -> dict:
    contexts = [int(c) for c in args.contexts.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-", dir=args.work))
    report: dict = {"shape": args.shape, "layers": args.layers, "gpu_offload_supported": gpu_offload_supported()}
    try:
        started = time.monotonic()
        write_checkpoint(work / "src", args.shape, args.layers)
        report["checkpoint_s"] = round(time.monotonic() - started, 1)
        gguf_path = work / "model-q4_k_m.gguf"
        result = convert(work / "src", gguf_path, "q4_k_m")
        shutil.rmtree(work / "src")
        report |= {"convert_s": round(result.seconds, 1), "gguf_bytes": result.size_bytes, "n_params": result.n_params}
        n_ctx = max(contexts) + args.decode_tokens + 64
        plan = plan_for(gguf_path, n_ctx=n_ctx, kv_type="f16")
        report["plan"] = plan.to_json()
        gpu_before = detect_gpu()
        engine = LlamaEngine()
        started = time.monotonic()
        engine.load(LoadOptions(str(gguf_path), n_ctx=n_ctx, n_gpu_layers=-1, n_batch=args.n_batch, kv_type="f16",
                                flash_attn=True))
        report["load_s"] = round(time.monotonic() - started, 1)
        gpu_after = detect_gpu()
        if gpu_before and gpu_after:
            report |= {"gpu": gpu_after.name, "vram_used_bytes": gpu_before.free_bytes - gpu_after.free_bytes,
                       "vram_total_bytes": gpu_after.total_bytes}
        report |= measure(engine, engine.llm.n_vocab(), contexts, args.decode_tokens)
        engine.unload()
        weights = streamed_bytes(gguf_path)
        bandwidth = args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else bandwidth_bytes_per_s()
        report["streamed_weight_bytes"] = weights
        if bandwidth:
            bound = decode_bound(bandwidth, weights)
            report |= {"bandwidth_gb_per_s": round(bandwidth / 1e9), "decode_bound_tokens_per_s": round(bound, 1),
                       "decode_share_of_bound": round(report["decode_tokens_per_s"] / bound, 3)}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["nemo", "tiny"], default="nemo")
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--contexts", default="8192,32768", help="prompt lengths to time, comma-separated")
    parser.add_argument("--decode-tokens", type=int, default=256)
    parser.add_argument("--n-batch", type=int, default=512, help="tokens per prompt step (the app uses 512)")
    parser.add_argument("--bandwidth-gbs", type=float, help="the GPU's memory bandwidth, when NVML cannot tell")
    parser.add_argument("--work", help="folder for the temporary files (about 55 GB for the 40-layer shape)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", help="also write the JSON report here")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
