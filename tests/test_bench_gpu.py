"""bench/gpu's CPU-side steps on a small shape: checkpoint, convert to Q4_K_M, plan, load, measure."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

from sparse_nemo import write_sparse_nemo

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gpu" / "bench_gpu.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_runs_its_steps_on_a_tiny_nemo(tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(BENCH), "--shape", "tiny", "--layers", "2", "--contexts", "256,512",
                           "--decode-tokens", "8", "--work", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["prompt_tokens_per_s"]) == {"256", "512"} and min(report["prompt_tokens_per_s"].values()) > 0
    assert report["decode_tokens_per_s"] > 0 and report["decode_tokens"] >= 1
    assert report["plan"]["n_ctx"] == 512 + 8 + 64 and report["plan"]["layers_total"] == 3
    assert 0 < report["streamed_weight_bytes"] < report["gguf_bytes"]
    bound_known = load_bench().bandwidth_bytes_per_s() is not None  # NVML reports a GPU's bandwidth
    assert ("decode_bound_tokens_per_s" in report) == bound_known
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # the work folder was removed


def test_the_nemo_shape_and_the_bandwidth_bound(tmp_path):
    bench = load_bench()
    from bench_convert import shapes

    assert sum(math.prod(s) for s in shapes(40).values()) == 12_247_782_400 - 131072 * 5120  # NeMo, embeddings tied
    streamed = bench.streamed_bytes(write_sparse_nemo(tmp_path / "nemo.gguf", "Q4_K_M"))
    assert streamed == 7_469_322_240 - 377_487_360  # all but the token embeddings
    assert round(bench.decode_bound(3.35e12, streamed)) == 472  # an H100 SXM's bound, tokens/s
