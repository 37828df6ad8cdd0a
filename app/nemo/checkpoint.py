"""Read a Mistral NeMo checkpoint folder (Hugging Face or Mistral-native) one tensor at a time.

Nothing is loaded up front: each safetensors header is parsed and checked, and tensor rows are
memory-mapped only while a chunk of them is being read. No torch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from app.base.errors import UserError

# safetensors dtype -> (numpy storage dtype, bytes per element)
STORAGE = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F8_E4M3": np.uint8}

# Scale tensors that FP8 checkpoints keep next to a weight (HF fp8, compressed-tensors, native).
WEIGHT_SCALES = ("weight_scale_inv", "weight_scale", "qscale_weight")
# Activation scales: only used by FP8 kernels, not needed to recover the weights.
ACTIVATION_SCALES = ("input_scale", "activation_scale", "qscale_act", "k_scale", "v_scale")

HF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
NATIVE_NAMES = {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
    "attention.wq.weight": "attn_q.weight",
    "attention.wk.weight": "attn_k.weight",
    "attention.wv.weight": "attn_v.weight",
    "attention.wo.weight": "attn_output.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "attention_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
}
LAYER_PREFIX = {"hf": re.compile(r"^model\.layers\.(\d+)\.(.+)$"), "native": re.compile(r"^layers\.(\d+)\.(.+)$")}

NEMO_CONTEXT = 131072  # the window NeMo supports (the HF config says 1,024,000)


@dataclass(frozen=True)
class ModelConfig:
    """The hyperparameters a llama-architecture GGUF needs."""

    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    rope_theta: float
    rms_eps: float
    context_length: int
    tied_embeddings: bool = False
    fp8_block: tuple[int, int] | None = None

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """GGUF tensor name -> shape (rows, cols) as stored in the checkpoint."""
        h, q, kv = self.hidden, self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (self.vocab, h), "output_norm.weight": (h,)}
        if not self.tied_embeddings:
            shapes["output.weight"] = (self.vocab, h)
        block = {
            "attn_norm.weight": (h,), "attn_q.weight": (q, h), "attn_k.weight": (kv, h),
            "attn_v.weight": (kv, h), "attn_output.weight": (h, q), "ffn_norm.weight": (h,),
            "ffn_gate.weight": (self.ffn, h), "ffn_up.weight": (self.ffn, h), "ffn_down.weight": (h, self.ffn),
        }  # fmt: skip
        for i in range(self.n_layers):
            shapes.update({f"blk.{i}.{name}": shape for name, shape in block.items()})
        return shapes


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor lies in a safetensors file."""

    file: Path
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int

    def rows(self, index: slice | np.ndarray) -> np.ndarray:
        """Rows `index` (of the first axis) as float32; the mapping is dropped afterwards."""
        mapped = np.memmap(self.file, dtype=STORAGE[self.dtype], mode="r", offset=self.offset, shape=self.shape)
        return to_float32(np.array(mapped[index]), self.dtype)

    def read(self) -> np.ndarray:
        return self.rows(slice(None))


@dataclass(frozen=True)
class SourceTensor:
    """One GGUF tensor and how to make it from the checkpoint: dequantize, then reorder rows."""

    name: str
    shape: tuple[int, ...]
    stored: StoredTensor
    scale: StoredTensor | None = None
    fp8_block: tuple[int, int] | None = None
    rope_heads: int | None = None  # HF q/k: undo the rotate-half permutation for this many heads

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Output rows start..stop as float32."""
        if self.rope_heads:
            index = _interleave_rows(self.shape[0], self.rope_heads)[start:stop]
            data = self.stored.rows(index)
        else:
            index, data = np.arange(start, stop), self.stored.rows(slice(start, stop))
        return data if self.scale is None else data * self._scale_rows(index)

    def _scale_rows(self, index: np.ndarray) -> np.ndarray:
        scale = self.scale.read()
        rows, cols = self.shape
        if scale.size == 1:
            return scale.reshape(1, 1)
        if scale.shape in ((rows,), (rows, 1)):
            return scale.reshape(rows, 1)[index]
        br, bc = self.fp8_block or (128, 128)
        if scale.shape != (math.ceil(rows / br), math.ceil(cols / bc)):
            raise UserError("ckpt_scale_shape", file=self.scale.file.name, scale=self.scale.name, shape=list(scale.shape),
                            tensor=self.stored.name, tensor_shape=list(self.shape), blocks=f"{br}x{bc}")
        return np.repeat(scale[index // br], bc, axis=1)[:, :cols]


@cache
def _interleave_rows(rows: int, heads: int) -> np.ndarray:
    """Source row of each output row: llama.cpp's permutation from HF rotate-half to interleaved RoPE."""
    half = rows // heads // 2
    return np.arange(rows).reshape(heads, 2, half).swapaxes(1, 2).reshape(rows)


@cache
def _e4m3_table() -> np.ndarray:
    """float32 value of each FP8 E4M3 (fn) byte: 4 exponent bits (bias 7), 3 mantissa bits, no inf."""
    b = np.arange(256)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp, man = (b >> 3) & 0xF, b & 0x7
    value = np.where(exp == 0, man / 8 * 2.0**-6, (1 + man / 8) * 2.0 ** (exp - 7))
    value[(b & 0x7F) == 0x7F] = np.nan
    return (sign * value).astype(np.float32)


def to_float32(data: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values (see STORAGE) as float32."""
    if dtype == "BF16":
        return (data.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F8_E4M3":
        return _e4m3_table()[data]
    return data.astype(np.float32, copy=False)


def read_safetensors_header(path: Path) -> dict[str, StoredTensor]:
    """The tensors of a safetensors file, checked against the file's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= size - 8:
                raise UserError("ckpt_not_safetensors_size", path=str(path), size=size)
            header = json.loads(f.read(length))
        header.pop("__metadata__", None)
        needed = 8 + length + max((meta["data_offsets"][1] for meta in header.values()), default=0)
    except FileNotFoundError:
        raise UserError("ckpt_file_missing", path=str(path)) from None
    except (UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError, IndexError):
        raise UserError("ckpt_bad_header", path=str(path)) from None
    data_start, tensors = 8 + length, {}
    if needed > size:
        raise UserError("ckpt_truncated", path=str(path), size=size, needed=needed)
    for name, meta in header.items():
        dtype, shape, (begin, end) = meta["dtype"], tuple(meta["shape"]), meta["data_offsets"]
        if dtype not in STORAGE:
            raise UserError("ckpt_bad_dtype", path=str(path), tensor=name, dtype=dtype, supported=", ".join(STORAGE))
        if end - begin != math.prod(shape) * np.dtype(STORAGE[dtype]).itemsize:
            raise UserError("ckpt_bad_size", path=str(path), tensor=name, size=end - begin, shape=list(shape))
        tensors[name] = StoredTensor(path, name, dtype, shape, data_start + begin)
    return tensors


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("ckpt_file_missing", path=str(path)) from None
    except (OSError, ValueError) as e:
        raise UserError("ckpt_bad_json", path=str(path), error=str(e)) from None


def _context(configured: int | None) -> int:
    return min(configured, NEMO_CONTEXT) if configured else NEMO_CONTEXT


def hf_config(path: Path) -> ModelConfig:
    """ModelConfig from a Hugging Face config.json; refuses architectures other than Mistral."""
    c = read_json(path)
    archs = c.get("architectures") or [c.get("model_type", "unknown")]
    if "num_local_experts" in c or "MixtralForCausalLM" in archs:
        raise UserError("ckpt_mixtral", path=str(path), arch=archs[0])
    if archs != ["MistralForCausalLM"]:
        raise UserError("ckpt_architecture", path=str(path), arch=", ".join(archs))
    quant = c.get("quantization_config") or {}
    block = quant.get("weight_block_size")
    try:
        return ModelConfig(
            hidden=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
            n_kv_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
            head_dim=c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"],
            ffn=c["intermediate_size"], vocab=c["vocab_size"], rope_theta=float(c.get("rope_theta", 1e6)),
            rms_eps=float(c.get("rms_norm_eps", 1e-5)), context_length=_context(c.get("max_position_embeddings")),
            tied_embeddings=bool(c.get("tie_word_embeddings", False)), fp8_block=tuple(block) if block else None,
        )  # fmt: skip
    except KeyError as e:
        raise UserError("ckpt_missing_key", path=str(path), key_name=str(e)) from None


def native_config(path: Path) -> ModelConfig:
    """ModelConfig from a Mistral-native params.json; refuses MoE and vision models."""
    p = read_json(path)
    if "moe" in p:
        raise UserError("ckpt_moe", path=str(path))
    if "vision_encoder" in p:
        raise UserError("ckpt_vision", path=str(path))
    try:
        return ModelConfig(
            hidden=p["dim"], n_layers=p["n_layers"], n_heads=p["n_heads"], n_kv_heads=p.get("n_kv_heads") or p["n_heads"],
            head_dim=p.get("head_dim") or p["dim"] // p["n_heads"], ffn=p["hidden_dim"], vocab=p["vocab_size"],
            rope_theta=float(p.get("rope_theta", 1e6)), rms_eps=float(p.get("norm_eps", 1e-5)),
            context_length=_context(p.get("max_seq_len")), tied_embeddings=bool(p.get("tied_embeddings", False)),
        )  # fmt: skip
    except KeyError as e:
        raise UserError("ckpt_missing_key", path=str(path), key_name=str(e)) from None


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder: its layout ("hf" or "native"), config, tensors and vocabulary file."""

    folder: Path
    layout: str
    config: ModelConfig
    stored: dict[str, StoredTensor]
    vocab_file: Path

    @classmethod
    def open(cls, folder: str | Path) -> Checkpoint:
        """Find and check everything in `folder`; raises UserError naming what is wrong."""
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError("tools_no_such_folder", path=str(folder))
        if (folder / "config.json").is_file():
            layout, config, stored = "hf", hf_config(folder / "config.json"), _hf_tensors(folder)
        elif (folder / "params.json").is_file():
            layout, config, stored = "native", native_config(folder / "params.json"), _native_tensors(folder)
        else:
            raise UserError("ckpt_no_config", path=str(folder))
        vocab_file = next((folder / n for n in ("tekken.json", "tokenizer.json") if (folder / n).is_file()), None)
        if vocab_file is None:
            raise UserError("ckpt_no_vocab", path=str(folder))
        return cls(folder, layout, config, stored, vocab_file)

    def tensors(self) -> list[SourceTensor]:
        """Every GGUF tensor, in writing order, checked against the config's shapes."""
        names, found = NATIVE_NAMES if self.layout == "native" else HF_NAMES, {}
        for source, stored in self.stored.items():
            if source.endswith(WEIGHT_SCALES + ACTIVATION_SCALES) or source.endswith("rotary_emb.inv_freq"):
                continue
            name = _gguf_name(source, names, LAYER_PREFIX[self.layout])
            if name is None:
                raise UserError("ckpt_unexpected_tensor", path=str(stored.file), tensor=repr(source))
            found[name] = stored
        expected = self.config.expected_shapes()
        for name, shape in expected.items():
            stored = found.get(name)
            if stored is None:
                raise UserError("ckpt_missing_tensor", path=str(self.folder), tensor=name)
            if stored.shape != shape:
                raise UserError("ckpt_bad_shape", path=str(stored.file), tensor=stored.name, shape=list(stored.shape),
                                expected=list(shape))
        return [self._source(name, found[name]) for name in expected]

    def _source(self, name: str, stored: StoredTensor) -> SourceTensor:
        scale = next((self.stored[s] for s in _scale_names(stored.name) if s in self.stored), None)
        if stored.dtype == "F8_E4M3" and scale is None:
            raise UserError("ckpt_no_scale", path=str(stored.file), tensor=stored.name)
        heads = None
        if self.layout == "hf" and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = self.config.n_heads if "attn_q" in name else self.config.n_kv_heads
        return SourceTensor(name, stored.shape, stored, scale, self.config.fp8_block, heads)


def _gguf_name(source: str, names: dict[str, str], layer: re.Pattern) -> str | None:
    if source in names:
        return names[source]
    m = layer.match(source)
    if m and m.group(2) in names:
        return f"blk.{m.group(1)}.{names[m.group(2)]}"
    return None


def _scale_names(weight: str) -> list[str]:
    base = weight.removesuffix("weight")
    return [base + s for s in WEIGHT_SCALES]


def _hf_tensors(folder: Path) -> dict[str, StoredTensor]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map") or {}
        files = sorted(set(weight_map.values()))
    elif (folder / "model.safetensors").is_file():
        weight_map, files = None, ["model.safetensors"]
    else:
        raise UserError("ckpt_no_hf_weights", path=str(folder))
    stored = {}
    for file in files:
        path = folder / file
        if not path.is_file():
            raise UserError("ckpt_listed_missing", path=str(path), index=index.name)
        stored.update(read_safetensors_header(path))
    for name, file in (weight_map or {}).items():
        if name not in stored:
            raise UserError("ckpt_listed_not_in_file", path=str(folder / file), tensor=name, index=index.name)
    return stored


def _native_tensors(folder: Path) -> dict[str, StoredTensor]:
    files = sorted(folder.glob("consolidated*.safetensors"))
    if not files:
        raise UserError("ckpt_no_native_weights", path=str(folder))
    stored = {}
    for path in files:
        stored.update(read_safetensors_header(path))
    return stored
