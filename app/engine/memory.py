"""How much memory a model's context needs and has: KV-cache sizes, free RAM, GPU offload support."""

from __future__ import annotations

import os

from app.base.errors import UserError
from app.base.gguf_info import GgufInfo
from app.runtime import LoadOptions

KV_TYPES = {"f16": (1, 2.0), "q8_0": (8, 1.0625), "q4_0": (2, 0.5625)}  # ggml type id, bytes/value
MEMORY_HEADROOM = 0.9  # refuse a KV cache that would take more than this share of free memory
CPU_AUTO_PARALLEL = 1  # sequences at once on the CPU when the setting says "automatic": measured on 2
# cores (bench/RESULTS.md), 4 sequences decoded little faster than one, and each costs a whole K/V cache


def free_memory_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits_in_memory(info: GgufInfo, options: LoadOptions, parallel: int = 1) -> None:
    """Refuse, before llama.cpp tries, a CPU-side context that cannot fit in free memory."""
    if options.n_ctx <= 0:
        raise UserError("plan_bad_context", n_ctx=options.n_ctx)
    if options.parallel < 0:
        raise UserError("plan_bad_parallel", parallel=options.parallel)
    if options.kv_type not in KV_TYPES:
        raise UserError("plan_bad_kv_type", kv=repr(options.kv_type), choices=", ".join(KV_TYPES))
    if options.n_gpu_layers != 0 and gpu_offload_supported():
        return  # the GPU plan (models.py) checks VRAM; llama.cpp reports what is left
    kv_bytes = parallel * info.kv_cache_bytes(options.n_ctx, KV_TYPES[options.kv_type][1])
    free = free_memory_bytes()
    if kv_bytes > free * MEMORY_HEADROOM:
        raise UserError("engine_kv_too_big_parallel" if parallel > 1 else "engine_kv_too_big", name=info.path.name,
                        tokens=f"{options.n_ctx:,}", parallel=parallel, gib=f"{kv_bytes / 2**30:.1f}",
                        free=f"{free / 2**30:.1f}")


def auto_parallel(info: GgufInfo, options: LoadOptions) -> int:
    """Sequences at once when the setting says "automatic" and no GPU plan chose: up to
    CPU_AUTO_PARALLEL whose K/V caches fit in free memory on the CPU; one with GPU layers."""
    if options.n_gpu_layers != 0 and gpu_offload_supported():
        return 1
    per_sequence = info.kv_cache_bytes(options.n_ctx, KV_TYPES.get(options.kv_type, KV_TYPES["f16"])[1])
    return max(1, min(CPU_AUTO_PARALLEL, int(free_memory_bytes() * MEMORY_HEADROOM // max(per_sequence, 1))))


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp build can put layers on a GPU at all."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
