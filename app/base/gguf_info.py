"""Read a GGUF file's header (metadata and tensor table) without loading weights, and
reject files that are missing, not GGUF, or truncated with a one-line reason."""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from app.base.errors import UserError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    file_size: int
    architecture: str
    name: str
    context_length: int
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    tokenizer_pre: str
    chat_template: str
    tensor_bytes: int

    @property
    def is_tekken(self) -> bool:
        """NeMo-family models: prompts must go through our Tekken encoder, not llama.cpp's."""
        return self.tokenizer_pre == "tekken"

    def kv_cache_bytes(self, n_ctx: int, bytes_per_value: float = 2.0) -> int:
        """K and V for every layer at this context (f16 = 2 bytes, q8_0 ~1.06, q4_0 ~0.56)."""
        return int(n_ctx * self.n_layers * self.n_head_kv * self.head_dim * 2 * bytes_per_value)


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    """Reads little-endian GGUF values from a buffer, moving forward."""

    def __init__(self, buf, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def unpack(self, fmt: str, count: int = 1) -> tuple:
        layout = f"<{count}{fmt}"
        values = struct.unpack_from(layout, self.buf, self.pos)
        self.pos += struct.calcsize(layout)
        return values

    def string(self) -> str:
        (size,) = self.unpack("Q")
        self.pos += size
        if self.pos > len(self.buf):
            raise ValueError("string runs past the end of the file")
        return bytes(self.buf[self.pos - size : self.pos]).decode("utf-8")

    def value(self, kind: int):
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, size = self.unpack("IQ")
            if item_kind in _SCALARS:
                return list(self.unpack(_SCALARS[item_kind], size))
            return [self.value(item_kind) for _ in range(size)]
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])[0]
        raise ValueError(f"unknown GGUF value type {kind}")


@dataclass(frozen=True)
class GgufTensor:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int  # absolute, in the file
    n_bytes: int


def read_gguf_header(path: str | Path) -> tuple[dict, list[GgufTensor]]:
    """Metadata and tensor table of a GGUF file, read with a small cursor over a memory map
    (gguf.GGUFReader takes ~20 s on a 131k-token vocabulary; this takes well under a second)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError("catalog_file_not_found", path=str(path))
    if not path.is_file() or path.stat().st_size < 24:
        raise UserError("gguf_too_small", path=str(path))
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != GGUF_MAGIC:
                raise UserError("gguf_wrong_magic", path=str(path))
            _version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
            cursor = _Cursor(buf, 24)
            metadata = {cursor.string(): cursor.value(cursor.unpack("I")[0]) for _ in range(n_kv)}
            infos = []
            for _ in range(n_tensors):
                name = cursor.string()
                (n_dims,) = cursor.unpack("I")
                shape = cursor.unpack("Q", n_dims)
                type_id, offset = cursor.unpack("IQ")
                infos.append((name, shape, type_id, offset))
            alignment = int(metadata.get("general.alignment", 32))
            data_start = -(-cursor.pos // alignment) * alignment
    except UserError:
        raise
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise UserError("gguf_damaged_header", path=str(path), error=str(exc)) from None
    tensors = []
    for name, shape, type_id, offset in infos:
        try:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        except (ValueError, KeyError):
            raise UserError("gguf_unknown_tensor_type", path=str(path), tensor=name, type_id=type_id) from None
        tensors.append(GgufTensor(name, tuple(shape), type_id, data_start + offset, math.prod(shape) // block * size))
    return metadata, tensors


def read_gguf_info(path: str | Path) -> GgufInfo:
    """Parse and check the header; raise UserError naming the file for anything that would not load."""
    path = Path(path).expanduser()
    metadata, tensors = read_gguf_header(path)
    size = path.stat().st_size
    end = max((t.offset + t.n_bytes for t in tensors), default=0)
    if end > size:
        raise UserError("gguf_truncated", path=str(path), needed=f"{end:,}", size=f"{size:,}")
    arch = str(metadata.get("general.architecture", "unknown"))
    get = lambda key, default=0: metadata.get(f"{arch}.{key}", default)  # noqa: E731
    n_embd, n_head = int(get("embedding_length")), int(get("attention.head_count") or 0)
    return GgufInfo(
        path=path,
        file_size=size,
        architecture=arch,
        name=str(metadata.get("general.name", path.stem)),
        context_length=int(get("context_length")),
        n_layers=int(get("block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=int(get("attention.head_count_kv", n_head) or n_head),
        head_dim=int(get("attention.key_length") or (n_embd // n_head if n_head else 0)),
        tokenizer_pre=str(metadata.get("tokenizer.ggml.pre", "")),
        chat_template=str(metadata.get("tokenizer.chat_template", "")),
        tensor_bytes=sum(t.n_bytes for t in tensors),
    )
