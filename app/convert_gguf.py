"""Convert a Mistral NeMo checkpoint folder (Hugging Face or Mistral-native) to a GGUF file.

f32, f16, bf16 and q8_0 are written directly, one chunk of rows at a time; q6_k, q5_k_m and
q4_k_m go through llama.cpp's own quantizer (in a child process, so it can be stopped). Output
is written to a hidden temporary file next to the destination and renamed at the end: an
interrupted or failed run leaves no broken .gguf behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import LlamaFileType as FT

from app.nemo.checkpoint import Checkpoint, ModelConfig, SourceTensor, read_json
from app.base.errors import UserError
from app.base.jobs import CancelToken, Progress, ProgressCallback, no_progress
from app.nemo.tekken import TEKKEN_PATTERN, Tekken, gpt2_token_bytes

CHUNK_ELEMENTS = 8 * 1024 * 1024  # rows converted at a time: about 32 MB of float32
WORKERS = min(4, os.cpu_count() or 1)  # threads encoding chunks ahead of the writer (numpy frees the GIL)

# Mistral V3-Tekken for plain chats: system prompt on the last user turn, no spaces around [INST].
CHAT_TEMPLATE = r"""{#- Mistral V3-Tekken; llama.cpp detects it by "[INST]" and [AVAILABLE_TOOLS]. Tools are not rendered. -#}
{%- set ns = namespace(system="", last_user=-1) -%}
{%- for message in messages -%}
    {%- if message["role"] == "system" -%}
        {%- set ns.system = ns.system ~ ("\n\n" if ns.system else "") ~ message["content"] -%}
    {%- elif message["role"] == "user" -%}
        {%- set ns.last_user = loop.index0 -%}
    {%- endif -%}
{%- endfor -%}
{{- bos_token -}}
{%- for message in messages -%}
    {%- if message["role"] == "user" -%}
        {{- "[INST]" -}}
        {%- if ns.system and loop.index0 == ns.last_user -%}{{- ns.system ~ "\n\n" -}}{%- endif -%}
        {{- message["content"] ~ "[/INST]" -}}
    {%- elif message["role"] == "assistant" -%}
        {{- message["content"].rstrip(" ") ~ eos_token -}}
    {%- endif -%}
{%- endfor -%}
"""

# llama.cpp's quantizer, run in a child process: argv = input, output, llama_ftype.
_QUANTIZE = """
import ctypes, sys, llama_cpp
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = int(sys.argv[3])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params)))
"""


@dataclass(frozen=True)
class OutType:
    """How to make one output type: the GGML type we write, then maybe llama.cpp's quantizer."""

    qtype: Q | None  # None: an intermediate as precise as the source, then llama_ftype
    llama_ftype: int | None = None
    bits_per_weight: float = 0.0  # for the free-space estimate of llama.cpp's output


OUTTYPES = {
    "f32": OutType(Q.F32),
    "f16": OutType(Q.F16),
    "bf16": OutType(Q.BF16),
    "q8_0": OutType(Q.Q8_0),
    "q6_k": OutType(None, FT.MOSTLY_Q6_K, 6.6),
    "q5_k_m": OutType(None, FT.MOSTLY_Q5_K_M, 5.7),
    "q4_k_m": OutType(None, FT.MOSTLY_Q4_K_M, 4.9),
}
FILE_TYPES = {Q.F32: FT.ALL_F32, Q.F16: FT.MOSTLY_F16, Q.BF16: FT.MOSTLY_BF16, Q.Q8_0: FT.MOSTLY_Q8_0}


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    outtype: str
    layout: str  # "hf" or "native"
    n_params: int
    size_bytes: int
    seconds: float


def convert(
    src_dir: str | Path,
    out_path: str | Path,
    outtype: str = "f16",
    context_length: int | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
    overwrite: bool = False,
) -> ConvertResult:
    """Convert the checkpoint in `src_dir` to a GGUF at `out_path` (an existing file there is
    replaced only with `overwrite`).

    outtype: f32 | f16 | bf16 | q8_0 | q6_k | q5_k_m | q4_k_m. context_length: the
    `llama.context_length` to record (default: the checkpoint's, at most NeMo's 131072).
    Progress counts weights; raises UserError for bad input, Cancelled when stopped.
    """
    started = time.monotonic()
    kind = OUTTYPES.get(outtype)
    if kind is None:
        raise UserError("convert_unknown_outtype", outtype=repr(outtype), choices=", ".join(OUTTYPES))
    out = Path(out_path)
    if not out.parent.is_dir():
        raise UserError("convert_no_folder", path=str(out), folder=str(out.parent))
    if not overwrite and (out.exists() or out.is_symlink()):
        raise _exists(out)
    if context_length is not None and context_length < 1:
        raise UserError("convert_bad_context", n=context_length)
    ckpt = Checkpoint.open(src_dir)
    tensors = ckpt.tensors()
    config = replace(ckpt.config, context_length=context_length) if context_length else ckpt.config
    vocab = _vocabulary(ckpt)
    qtype = _intermediate_type(tensors) if kind.qtype is None else kind.qtype
    plan = [(t, _tensor_type(t, qtype)) for t in tensors]
    n_params = sum(t.n_elements for t in tensors)
    needed = sum(_nbytes(t, q) for t, q in plan) + int(n_params * kind.bits_per_weight / 8)
    _check_space(out, needed)

    meter = _Meter(progress, n_params * (2 if kind.llama_ftype else 1))
    written = final = None
    try:
        written = _temp_path(out)
        _write_gguf(written, plan, config, vocab, _model_name(ckpt.folder), FILE_TYPES[qtype], meter, cancel)
        if kind.llama_ftype:
            final = _temp_path(out)
            _llama_quantize(written, final, kind, n_params, meter, cancel)
            written.unlink()
            written = final
        _place(written, out, overwrite)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError("convert_disk_full", path=str(out), gb=f"{needed / 1e9:.1f}") from None
        raise
    finally:
        for path in (written, final):
            if path is not None and path.exists():
                path.unlink()
    return ConvertResult(out, outtype, ckpt.layout, n_params, out.stat().st_size, time.monotonic() - started)


def _place(written: Path, out: Path, overwrite: bool) -> None:
    """The finished file takes its name; without `overwrite`, never over a file that appeared
    meanwhile (a hard link fails if the name exists; a file system without them is checked first)."""
    if overwrite:
        os.replace(written, out)
        return
    try:
        os.link(written, out)
    except FileExistsError:
        raise _exists(out) from None
    except OSError:
        if out.exists() or out.is_symlink():
            raise _exists(out) from None
        os.replace(written, out)


def _exists(out: Path) -> UserError:
    return UserError("convert_exists", path=str(out))


def _model_name(folder: Path) -> str:
    """The folder's name; for a Hugging Face cache snapshot (models--org--name/snapshots/sha), the model's."""
    folder = folder.resolve()
    if folder.parent.name == "snapshots":
        return folder.parent.parent.name.split("--")[-1]
    return folder.name


class _Meter:
    """Counts converted weights and reports them."""

    def __init__(self, progress: ProgressCallback, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def add(self, n: int, label: str) -> None:
        self.done += n
        self.progress(Progress(self.done, self.total, label))


def _vocabulary(ckpt: Checkpoint) -> Tekken:
    tekken = Tekken.from_json(ckpt.vocab_file) if ckpt.vocab_file.name == "tekken.json" else _from_tokenizer_json(ckpt.vocab_file)
    if tekken.vocab_size != ckpt.config.vocab:
        raise UserError("convert_vocab_size", path=str(ckpt.vocab_file), tokens=tekken.vocab_size, config=ckpt.config.vocab)
    return tekken


def _from_tokenizer_json(path: Path) -> Tekken:
    """A Tekken from a Hugging Face tokenizer.json (byte-level BPE; ids below the first text token are control)."""
    data = read_json(path)
    model, added = data.get("model") or {}, data.get("added_tokens") or []
    if model.get("type") != "BPE" or "ByteLevel" not in str(data.get("pre_tokenizer")):
        raise UserError("convert_not_bpe", path=str(path))
    specials = sorted((t["id"], t["content"]) for t in added if t.get("special"))
    if [i for i, _ in specials] != list(range(len(specials))):
        raise UserError("convert_specials_not_first", path=str(path))
    by_id = sorted((i, token) for token, i in model["vocab"].items() if i >= len(specials))
    return Tekken([gpt2_token_bytes(token) for _, token in by_id], TEKKEN_PATTERN, [s for _, s in specials], str(path))


def _intermediate_type(tensors: list[SourceTensor]) -> Q:
    """The type to hand llama.cpp's quantizer: no less precise than the checkpoint."""
    dtypes = {t.stored.dtype for t in tensors if len(t.shape) == 2}
    if dtypes <= {"BF16", "F8_E4M3"}:
        return Q.BF16
    return Q.F16 if dtypes == {"F16"} else Q.F32


def _tensor_type(t: SourceTensor, qtype: Q) -> Q:
    """Norms stay F32; a matrix whose rows don't fill whole blocks falls back to F16."""
    if len(t.shape) == 1:
        return Q.F32
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    return qtype if t.shape[-1] % block == 0 else Q.F16


def _nbytes(t: SourceTensor, qtype: Q) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return t.n_elements // block * size


def _check_space(out: Path, needed: int) -> None:
    free = shutil.disk_usage(out.parent).free
    if free < needed:
        raise UserError("convert_no_room", path=str(out), folder=str(out.parent), gb=f"{needed / 1e9:.1f}",
                        free=f"{free / 1e9:.1f}")


def _temp_path(out: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    return Path(name)


def _write_gguf(path: Path, plan: list[tuple[SourceTensor, Q]], config: ModelConfig, vocab: Tekken, name: str,
                file_type: FT, meter: _Meter, cancel: CancelToken | None) -> None:
    """Header, metadata and tensor infos through gguf.GGUFWriter; then the data, chunk by chunk."""
    writer = gguf.GGUFWriter(path, "llama")
    _add_metadata(writer, config, name, file_type)
    vocab.write_gguf_vocab(writer)
    for t, qtype in plan:
        writer.add_tensor_info(t.name, t.shape, np.float32, _nbytes(t, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    with open(path, "ab") as f:
        for t, start, stop, data in _encoded_chunks(plan):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if start == 0:
                f.write(b"\0" * (-f.tell() % writer.data_alignment))
            f.write(data.data)
            meter.add((stop - start) * t.n_elements // t.shape[0], t.name)
        f.write(b"\0" * (-f.tell() % writer.data_alignment))
        f.flush()
        os.fsync(f.fileno())


def _encoded_chunks(plan: list[tuple[SourceTensor, Q]]) -> Iterator[tuple[SourceTensor, int, int, np.ndarray]]:
    """(tensor, start row, stop row, encoded rows) in file order; WORKERS threads encode ahead."""
    jobs = [(t, q, start, stop) for t, q in plan for start, stop in _row_chunks(t.shape)]

    def encode(t: SourceTensor, qtype: Q, start: int, stop: int) -> tuple[SourceTensor, int, int, np.ndarray]:
        return t, start, stop, gguf.quants.quantize(t.rows(start, stop), qtype)

    with ThreadPoolExecutor(WORKERS) as pool:
        ahead: deque[Future] = deque()
        try:
            for job in jobs:
                ahead.append(pool.submit(encode, *job))
                if len(ahead) > WORKERS:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()


def _add_metadata(writer: gguf.GGUFWriter, c: ModelConfig, name: str, file_type: FT) -> None:
    writer.add_name(name)
    writer.add_context_length(c.context_length)
    writer.add_embedding_length(c.hidden)
    writer.add_block_count(c.n_layers)
    writer.add_feed_forward_length(c.ffn)
    writer.add_head_count(c.n_heads)
    writer.add_head_count_kv(c.n_kv_heads)
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.rms_eps)
    writer.add_vocab_size(c.vocab)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_chat_template(CHAT_TEMPLATE)


def _row_chunks(shape: tuple[int, ...]):
    rows = shape[0]
    step = rows if len(shape) == 1 else max(1, CHUNK_ELEMENTS // shape[1])
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def _llama_quantize(src: Path, dst: Path, kind: OutType, n_params: int, meter: _Meter, cancel: CancelToken | None) -> None:
    """Run llama.cpp's quantizer in a child process; progress from the output's growth."""
    expected, reported = n_params * kind.bits_per_weight / 8, 0
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-c", _QUANTIZE, str(src), str(dst), str(int(kind.llama_ftype))],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                try:
                    proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = int(n_params * min(0.99, dst.stat().st_size / expected))
                if now > reported:
                    meter.add(now - reported, "llama-quantize")
                    reported = now
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        output = log.read().decode("utf-8", errors="replace")
    if proc.returncode != 0:
        if "No space left" in output:
            raise OSError(errno.ENOSPC, "No space left on device")
        tail = output.strip().splitlines()[-1:] or ["no output"]
        raise UserError("convert_quantizer_failed", path=str(src), error=tail[0])
    meter.add(n_params - reported, "llama-quantize")
