"""A tiny Mistral NeMo for tests: NeMo's architecture at toy size, the real Tekken vocabulary.

Weights are random but exactly representable in bf16, kept in Mistral-native names and layout
(interleaved RoPE pairs). Writers produce a Hugging Face folder (sharded, q/k permuted to
rotate-half) or a Mistral-native folder; `forward` is a plain NumPy reference of the model.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def tekken_json() -> Path:
    """NeMo's tekken_240718.json as shipped in mistral-common (a test dependency)."""
    return Path(str(importlib.resources.files("mistral_common") / "data" / "tekken_240718.json"))


@dataclass(frozen=True)
class Tiny:
    """NeMo's shape rules at toy size: head_dim (128) differs from hidden / heads (64)."""

    hidden: int = 256
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 128
    ffn: int = 512
    vocab: int = 131072
    rope_theta: float = 1e6
    rms_eps: float = 1e-5


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bf16 (ties to even), still as float32."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)


def make_weights(cfg: Tiny = Tiny(), seed: int = 0) -> dict[str, np.ndarray]:
    """Random bf16-exact weights under Mistral-native names."""
    rng = np.random.default_rng(seed)

    def linear(rows: int, cols: int) -> np.ndarray:
        return bf16_round(rng.standard_normal((rows, cols), dtype=np.float32) / math.sqrt(cols))

    def norm() -> np.ndarray:
        return bf16_round(1 + 0.1 * rng.standard_normal(cfg.hidden, dtype=np.float32))

    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    w = {"tok_embeddings.weight": bf16_round(rng.standard_normal((cfg.vocab, cfg.hidden), dtype=np.float32)),
         "norm.weight": norm(), "output.weight": linear(cfg.vocab, cfg.hidden)}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        w |= {p + "attention_norm.weight": norm(), p + "attention.wq.weight": linear(q, cfg.hidden),
              p + "attention.wk.weight": linear(kv, cfg.hidden), p + "attention.wv.weight": linear(kv, cfg.hidden),
              p + "attention.wo.weight": linear(cfg.hidden, q), p + "ffn_norm.weight": norm(),
              p + "feed_forward.w1.weight": linear(cfg.ffn, cfg.hidden),
              p + "feed_forward.w3.weight": linear(cfg.ffn, cfg.hidden),
              p + "feed_forward.w2.weight": linear(cfg.hidden, cfg.ffn)}  # fmt: skip
    return w


HF_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight", "attention_norm.weight": "input_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight", "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight", "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight", "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight", "feed_forward.w2.weight": "mlp.down_proj.weight",
}  # fmt: skip


def hf_name(native: str) -> str:
    if native.startswith("layers."):
        _, i, rest = native.split(".", 2)
        return f"model.layers.{i}.{HF_NAMES[rest]}"
    return HF_NAMES[native]


def to_rotate_half(w: np.ndarray, heads: int) -> np.ndarray:
    """Interleaved RoPE rows -> HF's rotate-half rows (what HF's conversion script does)."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def to_hf(weights: dict[str, np.ndarray], cfg: Tiny = Tiny()) -> dict[str, np.ndarray]:
    """Native weights under HF names, q/k rows permuted to rotate-half."""
    out = {}
    for name, w in weights.items():
        if name.endswith(("wq.weight", "wk.weight")):
            w = to_rotate_half(w, cfg.n_heads if "wq" in name else cfg.n_kv_heads)
        out[hf_name(name)] = w
    return out


# --- writing -------------------------------------------------------------------------------


def bf16_bytes(x: np.ndarray) -> np.ndarray:
    return (bf16_round(x).view(np.uint32) >> 16).astype(np.uint16)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """Write `name -> (safetensors dtype, stored array)`; stored arrays are the raw elements."""
    header, offset = {}, 0
    for name, (dtype, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(data.shape), "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _, data in tensors.values():
            f.write(np.ascontiguousarray(data).data)


def as_bf16(weights: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    return {name: ("BF16", bf16_bytes(w)) for name, w in weights.items()}


def write_native(folder: Path, weights: dict[str, np.ndarray], cfg: Tiny = Tiny(), stored=None) -> Path:
    """A Mistral-native folder: params.json, consolidated.safetensors, tekken.json."""
    folder.mkdir(parents=True, exist_ok=True)
    params = {"dim": cfg.hidden, "n_layers": cfg.n_layers, "head_dim": cfg.head_dim, "hidden_dim": cfg.ffn,
              "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "norm_eps": cfg.rms_eps,
              "vocab_size": cfg.vocab, "rope_theta": cfg.rope_theta}  # fmt: skip
    (folder / "params.json").write_text(json.dumps(params))
    write_safetensors(folder / "consolidated.safetensors", stored or as_bf16(weights))
    shutil.copy(tekken_json(), folder / "tekken.json")
    return folder


def hf_config(cfg: Tiny = Tiny(), **extra) -> dict:
    return {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": cfg.hidden,
            "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
            "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "intermediate_size": cfg.ffn,
            "vocab_size": cfg.vocab, "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.rms_eps,
            "max_position_embeddings": 1024000, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
            **extra}  # fmt: skip


def write_hf(folder: Path, weights: dict[str, np.ndarray], cfg: Tiny = Tiny(), shards: int = 2,
             stored=None, config: dict | None = None) -> Path:
    """A Hugging Face folder: config.json, sharded safetensors with their index, tekken.json."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = stored or as_bf16(to_hf(weights, cfg))
    names, weight_map = list(tensors), {}
    for n in range(shards):
        file = f"model-{n + 1:05d}-of-{shards:05d}.safetensors"
        part = names[n::shards]
        write_safetensors(folder / file, {name: tensors[name] for name in part})
        weight_map |= dict.fromkeys(part, file)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config or hf_config(cfg)))
    shutil.copy(tekken_json(), folder / "tekken.json")
    return folder


# --- FP8 -----------------------------------------------------------------------------------


def e4m3_value(byte: int) -> float:
    """The value of one FP8 E4M3 (fn) byte, by the format's definition."""
    byte = int(byte)
    sign = -1.0 if byte & 0x80 else 1.0
    exp, man = (byte >> 3) & 0xF, byte & 0x7
    if exp == 0xF and man == 0x7:
        return math.nan
    return sign * (math.ldexp(man, -9) if exp == 0 else math.ldexp(8 + man, exp - 10))


def to_e4m3(x: np.ndarray) -> np.ndarray:
    """Nearest E4M3 byte of each value (|x| <= 448)."""
    positive = np.array([e4m3_value(b) for b in range(0x7F)])  # increasing with the byte
    a = np.abs(x)
    hi = np.clip(np.searchsorted(positive, a), 1, 0x7E)
    nearest = np.where(a - positive[hi - 1] <= positive[hi] - a, hi - 1, hi).astype(np.uint8)
    return nearest | np.where(x < 0, 0x80, 0).astype(np.uint8)


def fp8_block(w: np.ndarray, block: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E4M3 bytes, per-block scales, the dequantized weight they stand for)."""
    rows, cols = w.shape
    blocks = np.abs(w).reshape(rows // block, block, cols // block, block).max(axis=(1, 3))
    scale = (blocks / 448).astype(np.float32)
    full = np.repeat(np.repeat(scale, block, axis=0), block, axis=1)
    q = to_e4m3(w / full)
    table = np.array([e4m3_value(b) for b in range(256)], dtype=np.float32)
    return q, scale, table[q] * full


# --- the reference model -------------------------------------------------------------------


def forward(weights: dict[str, np.ndarray], tokens: list[int], cfg: Tiny = Tiny(), rope: str = "interleaved") -> np.ndarray:
    """Logits (tokens x vocab, float64) of a NeMo-architecture model under native names.

    rope: "interleaved" pairs dims (2i, 2i+1) as Mistral-native weights do; "half" pairs
    (i, i + head_dim/2) as HF's rotate-half does.
    """
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    t, hd = len(tokens), cfg.head_dim
    angles = np.arange(t)[:, None] * cfg.rope_theta ** (-np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]

    def rms(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_eps) * g

    def rotate(x: np.ndarray) -> np.ndarray:
        a, b = (x[..., 0::2], x[..., 1::2]) if rope == "interleaved" else (x[..., : hd // 2], x[..., hd // 2 :])
        ra, rb = a * cos - b * sin, a * sin + b * cos
        return np.stack([ra, rb], -1).reshape(x.shape) if rope == "interleaved" else np.concatenate([ra, rb], -1)

    x = w["tok_embeddings.weight"][tokens]
    causal = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        h = rms(x, w[p + "attention_norm.weight"])
        q = rotate((h @ w[p + "attention.wq.weight"].T).reshape(t, cfg.n_heads, hd))
        k = rotate((h @ w[p + "attention.wk.weight"].T).reshape(t, cfg.n_kv_heads, hd))
        v = (h @ w[p + "attention.wv.weight"].T).reshape(t, cfg.n_kv_heads, hd)
        group = cfg.n_heads // cfg.n_kv_heads
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + causal
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", probs, v).reshape(t, -1) @ w[p + "attention.wo.weight"].T
        h = rms(x, w[p + "ffn_norm.weight"])
        gate = h @ w[p + "feed_forward.w1.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ w[p + "feed_forward.w3.weight"].T)) @ w[p + "feed_forward.w2.weight"].T
    return rms(x, w["norm.weight"]) @ w["output.weight"].T


# --- reading a GGUF back (gguf.GGUFReader takes ~20 s on a 131072-token vocabulary) ---------

SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf(path: Path) -> tuple[dict, dict[str, tuple[int, tuple[int, ...], int]]]:
    """(metadata, name -> (GGML type, numpy-order shape, absolute data offset))."""
    import struct

    with open(path, "rb") as f:
        buf = memoryview(f.read(64 * 1024 * 1024))
    pos = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)

    def take(fmt: str):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("Q")
        pos += n
        return bytes(buf[pos - n : pos]).decode()

    def value(vtype: int):
        if vtype == 8:
            return string()
        if vtype == 9:
            item, count = take("I"), take("Q")
            return [value(item) for _ in range(count)]
        return take(SCALARS[vtype])

    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, take("I"), tuple(reversed(dims)), take("Q")))
    align = kv.get("general.alignment", 32)
    start = pos + (-pos % align)
    return kv, {name: (ggml_type, shape, start + offset) for name, ggml_type, shape, offset in infos}


def gguf_f32_tensor(path: Path, tensors: dict, name: str) -> np.ndarray:
    ggml_type, shape, offset = tensors[name]
    assert ggml_type == 0, f"{name} is not F32"
    return np.fromfile(path, dtype=np.float32, count=math.prod(shape), offset=offset).reshape(shape)
