"""The GPU plan on GGUF files with NeMo 12B's exact tensor table and no weights, checked against
arithmetic done here from the tensor sizes and NeMo's config (GUIDE §4)."""

from __future__ import annotations

import json
import os
import stat
from collections import defaultdict

import pytest
from conftest import run_cli
from sparse_nemo import PUBLISHED_GB, write_sparse_nemo

from app.base.errors import UserError
from app.base.gguf_info import read_gguf_header
from app.engine import gpu_plan
from app.engine.gpu_plan import detect_gpu, make_plan, model_memory, vram_gpu
from app.faces import cli
from app.engine.memory import gpu_offload_supported

GIB = 2**30
RAM = 64 * GIB
BYTES_PER_VALUE = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
KV_PER_TOKEN_PER_BLOCK = 8 * (128 + 128)  # K/V heads x (key + value length)
COMPUTE = 512 * 4 * (131072 + 2 * 14336 + 4 * 5120)  # logits + activations of 512 tokens, f32


@pytest.fixture(scope="module")
def nemo(tmp_path_factory):
    """Sparse NeMo GGUFs by quant (a few KB of disk each)."""
    folder = tmp_path_factory.mktemp("nemo")
    return {q: write_sparse_nemo(folder / f"nemo-{q}.gguf", q) for q in PUBLISHED_GB}


def layer_bytes(path):
    """(bytes of each block, bytes of the output layer) summed from the tensor table."""
    blocks, output = defaultdict(int), 0
    for t in read_gguf_header(path)[1]:
        if t.name.startswith("blk."):
            blocks[int(t.name.split(".")[1])] += t.n_bytes
        elif t.name in ("output.weight", "output_norm.weight"):
            output += t.n_bytes
    return [blocks[i] for i in range(40)], output


def expected_vram(path, layers: int, n_ctx: int, kv: str, parallel: int = 1) -> int:
    """Weights of the top layers, a K/V cache of n_ctx tokens for each sequence, compute buffers."""
    blocks, output = layer_bytes(path)
    on_gpu = blocks[40 - (layers - 1):] if layers > 1 else []
    cache = n_ctx * (layers - 1) * KV_PER_TOKEN_PER_BLOCK * BYTES_PER_VALUE[kv]
    return output + sum(on_gpu) + parallel * int(cache) + COMPUTE


def usable(gib: float) -> int:
    return int(gib * GIB) - 512 * 2**20 - int(0.05 * gib * GIB)


def test_sparse_files_match_the_published_sizes_and_cost_no_disk(nemo):
    for quant, path in nemo.items():
        assert path.stat().st_size / 1e9 == pytest.approx(PUBLISHED_GB[quant], abs=0.01)
        assert path.stat().st_blocks * 512 < 1e6
    mem = model_memory(nemo["Q4_K_M"])
    assert (mem.n_layers, mem.n_vocab, mem.n_ff, mem.kv_values_per_token) == (41, 131072, 14336, 2048)
    assert mem.kv_bytes(1, "f16") == 160 * 1024  # GUIDE: 160 KiB per token
    assert mem.kv_bytes(131072, "f16") == 20 * GIB


# (card GiB, requested context) -> (n_gpu_layers, K/V type) for NeMo Q4_K_M
EXPECTED = {
    (8, 8192): (38, "q8_0"), (8, 32768): (29, "q8_0"), (8, 131072): (15, "q8_0"),
    (12, 8192): (-1, "f16"), (12, 32768): (-1, "q8_0"), (12, 131072): (25, "q8_0"),
    (16, 8192): (-1, "f16"), (16, 32768): (-1, "f16"), (16, 131072): (-1, "q4_0"),
    (24, 8192): (-1, "f16"), (24, 32768): (-1, "f16"), (24, 131072): (-1, "q8_0"),
    (80, 8192): (-1, "f16"), (80, 32768): (-1, "f16"), (80, 131072): (-1, "f16"),
}  # fmt: skip
BETTER = {"q8_0": "f16", "q4_0": "q8_0"}


@pytest.mark.parametrize("card,n_ctx", list(EXPECTED))
def test_plan_for_cards_at_8k_32k_128k(nemo, card, n_ctx):
    path = nemo["Q4_K_M"]
    plan = make_plan(model_memory(path), vram_gpu(card), RAM, n_ctx)
    layers_expected, kv = EXPECTED[card, n_ctx]
    assert (plan.n_gpu_layers, plan.type_k, plan.type_v, plan.n_ctx) == (layers_expected, kv, kv, n_ctx)
    assert plan.flash_attn
    layers = 41 if plan.n_gpu_layers == -1 else plan.n_gpu_layers
    assert plan.vram_bytes_used == expected_vram(path, layers, n_ctx, plan.type_k, plan.parallel)
    assert plan.vram_bytes_used <= usable(card)
    if layers < 41:  # one more layer would not fit, and split layers run one sequence
        assert expected_vram(path, layers + 1, n_ctx, plan.type_k) > usable(card)
        assert plan.parallel == 1
    else:  # nor would a better K/V type; the memory left holds no more sequences (at most 8)
        if plan.type_k in BETTER:
            assert expected_vram(path, 41, n_ctx, BETTER[plan.type_k]) > usable(card)
        assert plan.parallel == 8 or expected_vram(path, 41, n_ctx, plan.type_k, plan.parallel + 1) > usable(card)
    used = f"{plan.vram_bytes_used / GIB:.1f} of {card:.1f} GiB"
    assert used in str(plan.explanation)
    assert ("all 41 layers on the GPU" in str(plan.explanation)) == (layers == 41)
    each = f"{plan.kv_bytes_per_sequence / GIB:.1f} GiB of K/V cache"
    assert plan.kv_bytes_per_sequence == n_ctx * 40 * KV_PER_TOKEN_PER_BLOCK * BYTES_PER_VALUE[plan.type_k]
    assert each in str(plan.explanation) and (f"{plan.parallel} sequences at once" in str(plan.explanation)) == (plan.parallel > 1)


@pytest.mark.parametrize("card,n_ctx,kv", [(8, 8192, "q8_0"), (12, 32768, "q8_0"), (16, 65536, "q8_0"),
                                           (24, 131072, "q8_0"), (80, 131072, "f16")])
def test_without_a_context_the_largest_that_fits_is_chosen(nemo, card, n_ctx, kv):
    path = nemo["Q4_K_M"]
    plan = make_plan(model_memory(path), vram_gpu(card), RAM)
    assert (plan.n_ctx, plan.type_k) == (n_ctx, kv)
    if plan.n_gpu_layers == -1 and n_ctx < 131072:
        bigger = {32768: 49152, 65536: 98304}[n_ctx]
        assert expected_vram(path, 41, bigger, "q8_0") > usable(card)


def test_bigger_quants_need_bigger_cards(nemo):
    plans = {q: make_plan(model_memory(nemo[q]), vram_gpu(12), RAM, 32768) for q in nemo}
    assert {q: (p.n_gpu_layers, p.type_k) for q, p in plans.items()} == {
        "Q4_K_M": (-1, "q8_0"), "Q5_K_M": (-1, "q8_0"), "Q6_K": (-1, "q4_0"), "Q8_0": (30, "q8_0")}
    for quant, plan in plans.items():
        layers = 41 if plan.n_gpu_layers == -1 else plan.n_gpu_layers
        assert plan.vram_bytes_used == expected_vram(nemo[quant], layers, 32768, plan.type_k, plan.parallel)


def test_a_card_too_small_for_one_layer_runs_on_the_cpu(nemo):
    plan = make_plan(model_memory(nemo["Q4_K_M"]), vram_gpu(1), RAM, 8192)
    assert (plan.n_gpu_layers, plan.vram_bytes_used, plan.flash_attn) == (0, 0, False)
    assert "cannot hold even one layer" in str(plan.explanation)
    assert expected_vram(nemo["Q4_K_M"], 1, 8192, "q8_0") > usable(1)


def test_cpu_only_machines(nemo):
    mem = model_memory(nemo["Q4_K_M"])
    plan = make_plan(mem, None, 32 * GIB)
    assert (plan.n_gpu_layers, plan.n_ctx, plan.type_k, plan.vram_bytes_used) == (0, 16384, "f16", 0)
    assert str(plan.explanation).startswith("no NVIDIA GPU found: all 41 layers on the CPU")
    cache = 16384 * 40 * 2048 * 2
    assert plan.parallel == 1, "on the CPU one sequence unless asked for more"
    assert plan.ram_bytes_used == mem.weights_bytes + cache + mem.compute_bytes(16384, False)
    assert "1 sequence at a time (2.5 GiB of K/V cache; each more sequence costs as much again)" in str(plan.explanation)
    four = make_plan(mem, None, 32 * GIB, parallel=4)
    assert four.parallel == 4 and four.ram_bytes_used == mem.weights_bytes + 4 * cache + mem.compute_bytes(16384, False)
    assert "4 sequences at once, each with its own 16k context (2.5 GiB of K/V cache each)" in str(four.explanation)
    built_for_cpu = make_plan(mem, vram_gpu(24), 32 * GIB, can_offload=False)
    assert built_for_cpu.n_gpu_layers == 0
    assert any("NEMO_CHAT_BACKEND=cuda ./run.sh" in note for note in map(str, built_for_cpu.notes))


def test_parallel_sequences_set_by_hand_must_fit_with_their_caches(nemo):
    path = nemo["Q4_K_M"]
    mem = model_memory(path)
    four = make_plan(mem, vram_gpu(24), RAM, 32768, parallel=4)
    assert (four.n_gpu_layers, four.parallel) == (-1, 4)
    assert four.vram_bytes_used == expected_vram(path, 41, 32768, four.type_k, 4) <= usable(24)
    assert expected_vram(path, 41, 32768, "f16", 4) > usable(24), "four f16 caches would not fit: q8_0"
    assert four.type_k == "q8_0"
    with pytest.raises(UserError, match="parallel sequences"):
        make_plan(mem, vram_gpu(24), RAM, 32768, parallel=-1)


def test_a_context_that_cannot_fit_is_refused(nemo):
    mem = model_memory(nemo["Q4_K_M"])
    with pytest.raises(UserError, match=r"131,072-token context needs .* only 4.0 GiB is free; the largest"):
        make_plan(mem, None, 4 * GIB, 131072)
    with pytest.raises(UserError, match="131,072-token context"):  # 15 layers on an 8 GB card, the rest in RAM
        make_plan(mem, vram_gpu(8), 4 * GIB, 131072)
    with pytest.raises(UserError, match="K/V cache type"):
        make_plan(mem, None, RAM, 8192, "q5_0")


def test_plan_command_json(nemo, home, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # plan as on a machine without a GPU, whatever this one has
    done = run_cli("plan", "--model", str(nemo["Q4_K_M"]), "--vram", "12", "--ctx", "32768", "--json", home=home)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert {k: plan[k] for k in ("n_gpu_layers", "n_ctx", "type_k", "type_v", "flash_attn")} == {
        "n_gpu_layers": -1, "n_ctx": 32768, "type_k": "q8_0", "type_v": "q8_0", "flash_attn": True}
    assert plan["vram_bytes_used"] == expected_vram(nemo["Q4_K_M"], 41, 32768, "q8_0", plan["parallel"])
    assert plan["explanation"].startswith("all 41 layers on the GPU, 32k context, q8_0 KV cache: 9.6 of 12.0 GiB")
    cpu_only_build = not gpu_offload_supported()
    assert any("rebuild" in note for note in plan["notes"]) == cpu_only_build  # says so when the build can't offload
    text = run_cli("plan", "--model", str(nemo["Q4_K_M"]), home=home)
    assert text.returncode == 0 and "all 41 layers on the CPU" in text.stdout
    assert "128k" in text.stdout  # the context table


def fake_nvidia_smi(folder, line: str):
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{line}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


def test_nvidia_smi_is_read_when_nvml_is_missing(tmp_path, monkeypatch, nemo, home, capsys):
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path, 'NVIDIA GeForce RTX 3060, 11842, 12288')}:{os.environ['PATH']}")
    monkeypatch.setattr(gpu_plan, "_nvml_gpu", lambda index: None)  # NVML missing, even on a machine with a GPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = detect_gpu()
    assert (gpu.name, gpu.free_bytes, gpu.total_bytes, gpu.source) == (
        "NVIDIA GeForce RTX 3060", 11842 * 2**20, 12288 * 2**20, "nvidia-smi")
    gpu_plan.detected_gpu.cache_clear()
    try:
        assert cli.main(["plan", "--model", str(nemo["Q4_K_M"]), "--json"]) == 0
    finally:
        gpu_plan.detected_gpu.cache_clear()
    plan = json.loads(capsys.readouterr().out)
    assert plan["gpu"] == "NVIDIA GeForce RTX 3060"
    if gpu_offload_supported():
        assert plan["n_gpu_layers"] != 0  # a CUDA build plans layers for that card
    else:  # a CPU-only build says so and plans for the CPU
        assert plan["n_gpu_layers"] == 0
        assert any("RTX 3060" in note and "NEMO_CHAT_BACKEND=cuda" in note for note in plan["notes"])


def test_cuda_visible_devices_hides_or_picks_the_card(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path, 'NVIDIA GeForce RTX 3060, 11842, 12288')}:{os.environ['PATH']}")
    monkeypatch.setattr(gpu_plan, "_nvml_gpu", lambda index: None)
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert detect_gpu() is None, "llama.cpp's CUDA build sees no GPU then: plan for the CPU"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    asked = []
    monkeypatch.setattr(gpu_plan, "_nvml_gpu", lambda index: asked.append(index))
    assert detect_gpu().name == "NVIDIA GeForce RTX 3060" and asked == [1]


def test_a_broken_nvidia_smi_means_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path, 'NVIDIA-SMI has failed')}:{os.environ['PATH']}")
    monkeypatch.setattr(gpu_plan, "_nvml_gpu", lambda index: None)
    assert detect_gpu() is None


def test_tied_embeddings_count_again_as_the_output_layer(model_path):
    mem = model_memory(model_path)  # SmolLM2: no output.weight
    embd = next(t for t in read_gguf_header(model_path)[1] if t.name == "token_embd.weight")
    assert mem.output_bytes == embd.n_bytes + 576 * 4 and mem.input_bytes == embd.n_bytes
    plan = make_plan(mem, None, RAM)
    assert (plan.n_ctx, plan.n_gpu_layers) == (8192, 0)  # its training context caps the choice


def test_auto_settings_take_layers_and_cache_type_from_the_plan(nemo, monkeypatch):
    from app.base.config import Settings
    from app.services.chat import load_options

    monkeypatch.setattr(gpu_plan, "detected_gpu", lambda: vram_gpu(12))
    monkeypatch.setattr(gpu_plan, "gpu_offload_supported", lambda: True)
    monkeypatch.setattr(gpu_plan, "free_memory_bytes", lambda: RAM)
    model = str(nemo["Q4_K_M"])
    auto = load_options(Settings(model=model, n_ctx=32768))
    assert (auto.n_ctx, auto.n_gpu_layers, auto.kv_type, auto.flash_attn) == (32768, -1, "q8_0", True)
    manual = load_options(Settings(model=model, n_ctx=32768, gpu="manual", n_gpu_layers=20))
    assert (manual.n_gpu_layers, manual.kv_type, manual.flash_attn) == (20, "f16", None)
    monkeypatch.setattr(gpu_plan, "detected_gpu", lambda: None)
    assert load_options(Settings(model=model, n_ctx=32768)) == auto  # kept: the model may be loaded by now
    monkeypatch.setattr(gpu_plan, "free_memory_bytes", lambda: 2 * GIB)
    with pytest.raises(UserError, match="131,072-token context needs"):  # the cache does not fit in RAM
        load_options(Settings(model=model, n_ctx=131072))
