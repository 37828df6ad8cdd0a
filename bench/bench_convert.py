"""Benchmark the GGUF converter on a synthetic checkpoint with Mistral NeMo's layer shapes.

    .venv/bin/python bench/bench_convert.py [--layers 1] [--outtype f16] [--layout hf]

Writes a bf16 checkpoint (hidden 5120, 32/8 heads of 128, FFN 14336, vocab 131072, embeddings
tied so that one layer makes about 1.9 GB) to a temporary folder, converts it in a child process,
and reports throughput and the child's peak RSS next to the largest tensor's size. The
temporary files are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from tiny_nemo import bf16_bytes, hf_config, tekken_json  # noqa: E402

NEMO = dict(hidden=5120, n_heads=32, n_kv_heads=8, head_dim=128, ffn=14336, vocab=131072)
BLOCK = 8 * 1024 * 1024  # elements of random data, repeated to fill every tensor


def shapes(layers: int) -> dict[str, tuple[int, ...]]:
    """HF tensor names and shapes of a NeMo-shaped model with tied embeddings."""
    h, q, kv, ffn = NEMO["hidden"], NEMO["n_heads"] * NEMO["head_dim"], NEMO["n_kv_heads"] * NEMO["head_dim"], NEMO["ffn"]
    out = {"model.embed_tokens.weight": (NEMO["vocab"], h), "model.norm.weight": (h,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out |= {p + "input_layernorm.weight": (h,), p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, q), p + "post_attention_layernorm.weight": (h,),
                p + "mlp.gate_proj.weight": (ffn, h), p + "mlp.up_proj.weight": (ffn, h),
                p + "mlp.down_proj.weight": (h, ffn)}  # fmt: skip
    return out


def write_checkpoint(folder: Path, layers: int) -> int:
    """A HF folder of random bf16 weights, written in blocks; returns the safetensors size."""
    tensors, header, offset = shapes(layers), {}, 0
    for name, shape in tensors.items():
        n = math.prod(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    block = bf16_bytes(np.random.default_rng(0).standard_normal(BLOCK, dtype=np.float32) * 0.02).tobytes()
    path = folder / "model.safetensors"
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for left in (math.prod(shape) * 2 for shape in tensors.values()):
            while left:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    config = hf_config(num_hidden_layers=layers, tie_word_embeddings=True, **{
        "hidden_size": NEMO["hidden"], "num_attention_heads": NEMO["n_heads"], "num_key_value_heads": NEMO["n_kv_heads"],
        "head_dim": NEMO["head_dim"], "intermediate_size": NEMO["ffn"], "vocab_size": NEMO["vocab"]})  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(tekken_json(), folder / "tekken.json")
    return path.stat().st_size


CHILD = """
import json, resource, sys
from app.convert_gguf import convert
r = convert(sys.argv[1], sys.argv[2], sys.argv[3])
peak_kb = max(int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]),  # this process's own peak
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # llama.cpp's quantizer, when it ran
print(json.dumps({"n_params": r.n_params, "size_bytes": r.size_bytes, "seconds": r.seconds, "peak_kb": peak_kb}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--outtype", default="f16")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files (default: the system's)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=args.tmp))
    try:
        src = work / "src"
        src.mkdir()
        started = time.monotonic()
        size_in = write_checkpoint(src, args.layers)
        print(f"checkpoint: {size_in / 1e9:.2f} GB bf16, {args.layers} layer(s), written in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", CHILD, str(src), str(work / "out.gguf"), args.outtype],
                              cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
        wall = time.monotonic() - started
        result = json.loads(done.stdout.strip().splitlines()[-1])
        peak = result["peak_kb"] * 1024  # measured in the child: ru_maxrss here would carry this process's peak over the exec
        largest = max(math.prod(s) for s in shapes(args.layers).values())
        report = {
            "outtype": args.outtype,
            "input_gb": round(size_in / 1e9, 3),
            "output_gb": round(result["size_bytes"] / 1e9, 3),
            "convert_s": round(result["seconds"], 1),
            "child_wall_s": round(wall, 1),
            "input_mb_per_s": round(size_in / 1e6 / result["seconds"], 1),
            "output_mb_per_s": round(result["size_bytes"] / 1e6 / result["seconds"], 1),
            "peak_rss_mb": round(peak / 1e6, 1),
            "largest_tensor_mb_bf16": round(largest * 2 / 1e6, 1),
            "largest_tensor_mb_f32": round(largest * 4 / 1e6, 1),
        }
        for key, value in report.items():
            print(f"{key:>24}: {value}")
        print(json.dumps(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
