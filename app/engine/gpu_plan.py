"""The GPU offload plan: GPU layers, context size, K/V cache type and flash attention chosen so
that a GGUF fits in the GPU's free memory with a safety margin, explained in one sentence.

The arithmetic follows llama.cpp's placement. Token embeddings always stay on the CPU.
`n_gpu_layers` counts the repeating blocks plus the output layer (NeMo: 40 + 1 = 41); the output
layer goes to the GPU first, then the blocks from the last one down, and each block on the GPU
keeps its K/V cache there. Free GPU memory comes from NVML (nvidia-ml-py), else nvidia-smi, else
the caller (`--vram`).

Parallel sequences: each sequence has its own K/V cache of the whole context, so N sequences cost
N caches. Set, N is part of what must fit; automatic, the context and K/V type are chosen for one
sequence first and N is what the memory left holds (up to GPU_AUTO_PARALLEL on a GPU with every
layer, CPU_AUTO_PARALLEL on the CPU, one when layers are split).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from app.base.errors import UserError
from app.base.gguf_info import read_gguf_header, read_gguf_info
from app.base.messages import Message
from app.engine.memory import CPU_AUTO_PARALLEL, KV_TYPES, MEMORY_HEADROOM, free_memory_bytes, gpu_offload_supported
from app.runtime import LoadOptions

GIB = 2**30
CONTEXT_SIZES = (8192, 16384, 32768, 49152, 65536, 98304, 131072)  # what settings offer
MAX_CONTEXT = 131072  # NeMo's supported window (its GGUF claims 1,024,000)
CPU_AUTO_CONTEXT = 16384  # the largest context a plan picks by itself without a GPU
N_UBATCH = 512  # LoadOptions.n_batch: tokens per compute step
CUDA_RESERVE = 512 * 2**20  # CUDA context, cuBLAS workspace
GPU_AUTO_PARALLEL = 8  # the most sequences at once a plan picks by itself on a GPU
RESERVE_SHARE = 0.05  # and this share of the card, for fragmentation and other programs
REBUILD_HINT = Message("plan_rebuild_hint")  # rebuild llama.cpp with CUDA (`NEMO_CHAT_BACKEND=cuda ./run.sh`)


@dataclass(frozen=True)
class Gpu:
    name: str | Message  # the card's own name, or the words for a card given by its memory (`--vram`)
    free_bytes: int
    total_bytes: int
    source: str  # NVML | nvidia-smi | --vram

    @property
    def usable_bytes(self) -> int:
        """Free memory less the safety margin."""
        return self.free_bytes - CUDA_RESERVE - int(RESERVE_SHARE * self.total_bytes)


def vram_gpu(gib: float) -> Gpu:
    """A card with this much free memory (`--vram GIB`)."""
    if gib <= 0:
        raise UserError("plan_vram_not_positive", gib=gib)
    return Gpu(Message("plan_vram_gpu", gib=f"{gib:g}"), int(gib * GIB), int(gib * GIB), "--vram")


def detect_gpu() -> Gpu | None:
    """The first NVIDIA GPU that CUDA may use: its free and total memory, or None without one.

    `CUDA_VISIBLE_DEVICES` is respected as llama.cpp's CUDA build respects it: set empty (or -1)
    it hides every GPU; otherwise its first entry is the card that is used."""
    index = _visible_gpu_index()
    if index is None:
        return None
    return _nvml_gpu(index) or _nvidia_smi_gpu(index)


def _visible_gpu_index() -> int | None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return 0
    first = visible.split(",")[0].strip()
    if not first or first.startswith("-"):
        return None
    return int(first) if first.isdigit() else 0  # a UUID: NVML and nvidia-smi list that card first too


@functools.lru_cache(maxsize=1)
def detected_gpu() -> Gpu | None:
    """`detect_gpu()` once per process: measured before this app puts a model on the card."""
    return detect_gpu()


def _nvml_gpu(index: int) -> Gpu | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, or no driver
        return None
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else name
        return Gpu(name, int(memory.free), int(memory.total), "NVML")
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def _nvidia_smi_gpu(index: int) -> Gpu | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = [exe, f"--id={index}", "--query-gpu=name,memory.free,memory.total", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=15)
        name, free, total = done.stdout.strip().splitlines()[0].rsplit(",", 2)
        return Gpu(name.strip(), int(float(free)) * 2**20, int(float(total)) * 2**20, "nvidia-smi")
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def compute_buffer_bytes(n_vocab: int, n_embd: int, n_ff: int, n_head: int, n_ctx: int, flash_attn: bool) -> int:
    """llama.cpp's scratch memory for one step of N_UBATCH tokens: logits and activations in f32;
    without flash attention also the attention scores (twice: scores and softmax)."""
    scores = 0 if flash_attn else 2 * n_ctx * n_head
    return N_UBATCH * 4 * (n_vocab + 2 * n_ff + 4 * n_embd + scores)


@dataclass(frozen=True)
class ModelMemory:
    """What a GGUF needs where, read from its tensor table."""

    name: str
    block_bytes: tuple[int, ...]  # each repeating block's weights
    output_bytes: int  # output layer (its norm too; the embeddings again when they are tied)
    input_bytes: int  # token embeddings: always on the CPU
    kv_values_per_token: int  # per block: K/V heads x (key + value length)
    n_vocab: int
    n_embd: int
    n_ff: int
    n_head: int
    context_length: int

    @property
    def n_layers(self) -> int:
        """Offloadable layers: the blocks and the output layer."""
        return len(self.block_bytes) + 1

    @property
    def weights_bytes(self) -> int:
        return self.input_bytes + self.output_bytes + sum(self.block_bytes)

    def kv_bytes(self, n_ctx: int, kv_type: str, blocks: int | None = None) -> int:
        blocks = len(self.block_bytes) if blocks is None else blocks
        return math.ceil(n_ctx * blocks * self.kv_values_per_token * KV_TYPES[kv_type][1])

    def compute_bytes(self, n_ctx: int, flash_attn: bool) -> int:
        return compute_buffer_bytes(self.n_vocab, self.n_embd, self.n_ff, self.n_head, n_ctx, flash_attn)

    def gpu_weight_bytes(self, layers: int) -> int:
        """Weights of the top `layers` layers: the output layer, then blocks from the last one down."""
        if layers <= 0:
            return 0
        blocks = layers - 1
        return self.output_bytes + (sum(self.block_bytes[len(self.block_bytes) - blocks :]) if blocks else 0)

    def gpu_bytes(self, layers: int, n_ctx: int, kv_type: str, parallel: int = 1) -> int:
        """GPU memory with the top `layers` layers offloaded (flash attention on), for `parallel`
        sequences of `n_ctx` tokens each."""
        if layers <= 0:
            return 0
        return (self.gpu_weight_bytes(layers) + parallel * self.kv_bytes(n_ctx, kv_type, layers - 1)
                + self.compute_bytes(n_ctx, True))


def model_memory(path: str | Path) -> ModelMemory:
    """The memory facts of a GGUF (cached while the file is unchanged)."""
    path = Path(path).expanduser()
    stat = path.stat() if path.exists() else None
    return _model_memory(path, stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0)


@functools.lru_cache(maxsize=8)
def _model_memory(path: Path, _size: int, _mtime: int) -> ModelMemory:
    info = read_gguf_info(path)
    metadata, tensors = read_gguf_header(path)
    blocks = [0] * info.n_layers
    by_name = {t.name: t for t in tensors}
    output = 0
    for t in tensors:
        if t.name.startswith("blk."):
            blocks[int(t.name.split(".")[1])] += t.n_bytes
        elif t.name != "token_embd.weight":
            output += t.n_bytes
    embd = by_name.get("token_embd.weight")
    if embd is None or not info.n_layers:
        raise UserError("plan_not_a_model", path=str(path))
    if "output.weight" not in by_name:
        output += embd.n_bytes  # tied embeddings: llama.cpp loads them again as the output layer
    value_length = int(metadata.get(f"{info.architecture}.attention.value_length", info.head_dim))
    return ModelMemory(
        name=path.name,
        block_bytes=tuple(blocks),
        output_bytes=output,
        input_bytes=embd.n_bytes,
        kv_values_per_token=info.n_head_kv * (info.head_dim + value_length),
        n_vocab=embd.shape[1],
        n_embd=info.n_embd,
        n_ff=int(metadata.get(f"{info.architecture}.feed_forward_length", 4 * info.n_embd)),
        n_head=info.n_head,
        context_length=info.context_length or MAX_CONTEXT,
    )


@dataclass(frozen=True)
class Plan:
    n_gpu_layers: int  # -1 = all, 0 = none
    n_ctx: int
    type_k: str
    type_v: str
    flash_attn: bool
    vram_bytes_used: int
    vram_bytes: int  # the card's memory (0 without one)
    ram_bytes_used: int  # weights and K/V cache left on the CPU
    layers_on_gpu: int
    layers_total: int
    explanation: Message  # a sentence's key and values: the faces word it
    gpu: str | Message = ""
    notes: tuple[Message, ...] = field(default=())
    parallel: int = 1  # sequences at once; the memory figures above hold all of them
    kv_bytes_per_sequence: int = 0  # what each one of them costs

    def to_json(self) -> dict:
        """The plan's figures, its explanation and notes in English."""
        return asdict(self) | {"explanation": str(self.explanation), "notes": [str(note) for note in self.notes],
                               "gpu": str(self.gpu)}


def context_label(n_ctx: int) -> str:
    return f"{n_ctx // 1024}k" if n_ctx % 1024 == 0 else f"{n_ctx:,}"


def _gib(n: int) -> str:
    return f"{n / GIB:.1f}"


def auto_contexts(mem: ModelMemory, cap: int = MAX_CONTEXT) -> list[int]:
    """Context sizes to try, largest first, within the model's training context."""
    limit = min(mem.context_length, cap)
    return sorted((c for c in CONTEXT_SIZES if c <= limit), reverse=True) or [limit]


def sequences_message(parallel: int, kv_per_sequence: int, n_ctx: int) -> Message:
    """'4 sequences at once, each with its own 16k context (2.5 GiB of K/V cache each)'."""
    if parallel == 1:
        return Message("plan_one_sequence", gib=_gib(kv_per_sequence))
    return Message("plan_sequences", n=parallel, context=context_label(n_ctx), gib=_gib(kv_per_sequence))


def _fitting(budget: int, per_sequence: int, cap: int) -> int:
    """How many sequences (1 to cap) the memory `budget` left after the first one holds."""
    return max(1, min(cap, 1 + int(budget // per_sequence))) if budget > 0 else 1


def _candidates(contexts: list[int], kv_type: str | None) -> list[tuple[int, str]]:
    """(context, K/V type) in order of preference: the largest context first, f16 where it fits;
    q4_0 (which costs some quality) only at the smallest context."""
    if kv_type:
        return [(c, kv_type) for c in contexts]
    return [(c, kv) for c in contexts for kv in ("f16", "q8_0")] + [(contexts[-1], "q4_0")]


def make_plan(mem: ModelMemory, gpu: Gpu | None, ram_bytes: int, n_ctx: int | None = None,
              kv_type: str | None = None, can_offload: bool = True, parallel: int = 0) -> Plan:
    """The plan for this model on this GPU (None: none) with `ram_bytes` of free memory.
    `n_ctx` / `kv_type` / `parallel` fix those choices; without them the largest context that fits
    one sequence is chosen, then as many sequences as the memory left holds."""
    if n_ctx is not None and n_ctx <= 0:
        raise UserError("plan_bad_context", n_ctx=n_ctx)
    if parallel < 0:
        raise UserError("plan_bad_parallel", parallel=parallel)
    if kv_type is not None and kv_type not in KV_TYPES:
        raise UserError("plan_bad_kv_type", kv=repr(kv_type), choices=", ".join(KV_TYPES))
    notes = []
    if n_ctx and n_ctx > mem.context_length:
        notes.append(Message("plan_note_beyond_training", context=context_label(n_ctx), trained=f"{mem.context_length:,}"))
    if gpu is not None and not can_offload:
        notes.append(Message("plan_note_gpu_but_cpu_build", gpu=gpu.name, rebuild=REBUILD_HINT))
    if gpu is None or not can_offload:
        reason = Message("plan_reason_cpu_build" if gpu is not None else "plan_reason_no_gpu")
        return _cpu_plan(mem, ram_bytes, n_ctx, kv_type, reason, gpu.name if gpu else "", notes, parallel)
    usable = gpu.usable_bytes
    contexts = [n_ctx] if n_ctx else auto_contexts(mem)
    fixed = parallel or 1
    for ctx, kv in _candidates(contexts, kv_type):
        used = mem.gpu_bytes(mem.n_layers, ctx, kv, fixed)
        if used <= usable:
            each = mem.kv_bytes(ctx, kv)
            n = parallel or _fitting(usable - used, each, GPU_AUTO_PARALLEL)
            used += (n - fixed) * each
            sentence = Message("plan_all_on_gpu", layers=mem.n_layers, context=context_label(ctx), kv=kv,
                               used=_gib(used), total=_gib(gpu.total_bytes), sequences=sequences_message(n, each, ctx))
            return Plan(-1, ctx, kv, kv, True, used, gpu.total_bytes, mem.input_bytes, mem.n_layers,
                        mem.n_layers, sentence, gpu.name, tuple(notes), n, each)
    ctx, kv = contexts[-1], kv_type or "q8_0"
    layers = max((n for n in range(mem.n_layers) if mem.gpu_bytes(n, ctx, kv, fixed) <= usable), default=0)
    if layers == 0:
        reason = Message("plan_reason_gpu_too_small", free=_gib(gpu.free_bytes),
                         layer=_gib(mem.gpu_bytes(1, ctx, kv, fixed)), margin=_gib(gpu.free_bytes - usable))
        return _cpu_plan(mem, ram_bytes, ctx, kv_type, reason, gpu.name, notes, parallel)
    used = mem.gpu_bytes(layers, ctx, kv, fixed)
    cpu_cache = fixed * mem.kv_bytes(ctx, kv, mem.n_layers - layers)
    _check_ram(mem, cpu_cache, ram_bytes, ctx, kv)
    ram = mem.weights_bytes - mem.gpu_weight_bytes(layers) + cpu_cache
    full = mem.gpu_bytes(mem.n_layers, ctx, kv, fixed)
    sentence = Message("plan_split", layers=layers, total_layers=mem.n_layers, context=context_label(ctx), kv=kv,
                       used=_gib(used), total=_gib(gpu.total_bytes), full=_gib(full),
                       sequences=sequences_message(fixed, mem.kv_bytes(ctx, kv), ctx))
    return Plan(layers, ctx, kv, kv, True, used, gpu.total_bytes, ram, layers, mem.n_layers, sentence, gpu.name,
                tuple(notes), fixed, mem.kv_bytes(ctx, kv))


def _cpu_plan(mem: ModelMemory, ram_bytes: int, n_ctx: int | None, kv_type: str | None, reason: Message,
              gpu_name: str, notes: list[Message], parallel: int = 0) -> Plan:
    """Everything on the CPU: the largest context (up to CPU_AUTO_CONTEXT) whose cache fits in RAM;
    automatic, as many sequences (up to CPU_AUTO_PARALLEL) as fit beside the weights."""
    contexts = [n_ctx] if n_ctx else auto_contexts(mem, CPU_AUTO_CONTEXT)
    fixed = parallel or 1
    for ctx, kv in _candidates(contexts, kv_type):
        flash = kv != "f16"
        need = fixed * mem.kv_bytes(ctx, kv) + mem.compute_bytes(ctx, flash)
        if need <= ram_bytes * MEMORY_HEADROOM:
            break
    else:
        _check_ram(mem, need, ram_bytes, ctx, kv)
    each = mem.kv_bytes(ctx, kv)
    n = parallel or _fitting(ram_bytes * MEMORY_HEADROOM - mem.weights_bytes - need, each, CPU_AUTO_PARALLEL)
    need += (n - fixed) * each
    total = mem.weights_bytes + need
    if total > ram_bytes:
        notes.append(Message("plan_note_from_disk", gib=_gib(total)))
    sentence = Message("plan_all_on_cpu", reason=reason, layers=mem.n_layers, context=context_label(ctx), kv=kv,
                       gib=_gib(total), sequences=sequences_message(n, each, ctx))
    return Plan(0, ctx, kv, kv, flash, 0, 0, total, 0, mem.n_layers, sentence, gpu_name, tuple(notes), n, each)


def _check_ram(mem: ModelMemory, need: int, ram_bytes: int, n_ctx: int, kv: str) -> None:
    """Refuse a context whose CPU-side cache cannot fit in free memory, naming the largest that can."""
    budget = ram_bytes * MEMORY_HEADROOM
    if need <= budget:
        return
    per_token = mem.kv_bytes(1, "q4_0")
    largest = int((budget - mem.compute_bytes(0, True)) // per_token) // 1024 * 1024
    advice = Message("plan_largest_fits", tokens=f"{largest:,}") if largest >= 1024 else Message("plan_smaller_model")
    raise UserError("plan_context_too_big", name=mem.name, tokens=f"{n_ctx:,}", need=_gib(need), kv=kv,
                    free=_gib(ram_bytes), advice=advice)


def plan_for(model_path: str | Path, vram_gib: float | None = None, n_ctx: int | None = None,
             kv_type: str | None = None, parallel: int = 0) -> Plan:
    """The plan on this machine: its GPU (or a `vram_gib` card) and its free memory."""
    mem = model_memory(model_path)
    can_offload = gpu_offload_supported()
    gpu = vram_gpu(vram_gib) if vram_gib is not None else detected_gpu()
    plan = make_plan(mem, gpu, free_memory_bytes(), n_ctx, kv_type, can_offload or vram_gib is not None, parallel)
    if vram_gib is not None and not can_offload:
        plan = replace(plan, notes=(*plan.notes, Message("plan_note_vram_cpu_build", gib=f"{vram_gib:g}",
                                                                  rebuild=REBUILD_HINT)))
    return plan


def planned_options(options: LoadOptions) -> LoadOptions:
    """`options` with GPU layers, K/V type, flash attention and (when 0, automatic) the number of
    parallel sequences from the plan for its context."""
    path = Path(options.model_path).expanduser().resolve()
    plan = _kept_plan(path, path.stat().st_mtime_ns, options.n_ctx, options.parallel)
    return replace(options, n_gpu_layers=plan.n_gpu_layers, kv_type=plan.type_k, flash_attn=plan.flash_attn,
                   parallel=plan.parallel)


@functools.lru_cache(maxsize=16)
def _kept_plan(path: Path, _mtime: int, n_ctx: int, parallel: int) -> Plan:
    """The first plan for a file, context and parallel setting is kept for the process: once the
    model is loaded, the free memory it is planned from has shrunk by what the model took (a
    refusal is not kept)."""
    return plan_for(path, n_ctx=n_ctx, parallel=parallel)


def context_costs(mem: ModelMemory) -> list[tuple[int, dict[str, int]]]:
    """The K/V cache of each offered context size for each K/V type."""
    return [(c, {kv: mem.kv_bytes(c, kv) for kv in KV_TYPES}) for c in CONTEXT_SIZES if c <= mem.context_length]
