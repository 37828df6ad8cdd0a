"""Read a GGUF file's header (metadata and tensor table) without loading weights, and
reject files that are missing, not GGUF, or truncated with a one-line reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

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


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return value if value is not None else default


def read_gguf_info(path: str | Path) -> GgufInfo:
    """Parse the header; raise UserError naming the file for anything that would not load."""
    import gguf  # imported here: the package is large and only needed when a file is opened

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: model file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise UserError(f"{path}: not a GGUF model file (wrong magic bytes)")
    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as exc:  # the reader raises many kinds on damaged headers
        raise UserError(f"{path}: damaged or truncated GGUF header ({type(exc).__name__})") from None
    end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise UserError(f"{path}: truncated GGUF (tensor data needs {end:,} bytes, file has {size:,})")
    arch = str(_field(reader, "general.architecture", "unknown"))
    n_embd = int(_field(reader, f"{arch}.embedding_length", 0))
    n_head = int(_field(reader, f"{arch}.attention.head_count", 0) or 0)
    head_dim = int(_field(reader, f"{arch}.attention.key_length", 0) or (n_embd // n_head if n_head else 0))
    return GgufInfo(
        path=path,
        file_size=size,
        architecture=arch,
        name=str(_field(reader, "general.name", path.stem)),
        context_length=int(_field(reader, f"{arch}.context_length", 0)),
        n_layers=int(_field(reader, f"{arch}.block_count", 0)),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=int(_field(reader, f"{arch}.attention.head_count_kv", n_head) or n_head),
        head_dim=head_dim,
        tokenizer_pre=str(_field(reader, "tokenizer.ggml.pre", "")),
        chat_template=str(_field(reader, "tokenizer.chat_template", "")),
        tensor_bytes=sum(int(t.n_bytes) for t in reader.tensors),
    )
