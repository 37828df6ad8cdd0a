"""Engines: the `Engine` interface, and the embedded llama.cpp engine that streams from token ids.

Prompt ingestion runs in `n_batch` steps (progress, cancel between steps); generation checks the
cancel token between tokens; the KV cache keeps the longest common prefix with the last prompt.
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Protocol

from app.base.errors import UserError
from app.base.gguf_info import GgufInfo, read_gguf_info
from app.base.jobs import WAITING, CancelToken, Progress, ProgressCallback, no_progress

if TYPE_CHECKING:
    from app.nemo.tekken import Tekken

KV_TYPES = {"f16": (1, 2.0), "q8_0": (8, 1.0625), "q4_0": (2, 0.5625)}  # ggml type id, bytes/value
MEMORY_HEADROOM = 0.9  # refuse a KV cache that would take more than this share of free memory
BUSY_WAIT_S = 300  # a completion waits this long for the model, then says it is busy


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. `n_ctx` is always explicit: 0 would mean the training context."""

    model_path: str
    n_ctx: int = 4096
    n_gpu_layers: int = -1
    n_threads: int = 0
    n_batch: int = 512
    kv_type: str = "f16"
    flash_attn: bool | None = None  # None: on when the KV cache is quantized or on a GPU


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 0.3
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 512
    seed: int | None = None


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    stop_reason: str = ""  # eos | length | cancelled

    @property
    def evaluated_tokens(self) -> int:
        """Prompt tokens that were actually computed (not reused from the KV cache)."""
        return self.prompt_tokens - self.cached_tokens


class TokenDecoder(Protocol):
    """Turns generated ids into text deltas; holds back split UTF-8 sequences."""

    def feed(self, token_id: int) -> str: ...

    def flush(self) -> str: ...


class LlamaTokenDecoder:
    """Decodes with llama.cpp's own vocabulary, byte-exact across split characters."""

    def __init__(self, llm) -> None:
        self._llm = llm
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._utf8.decode(self._llm.detokenize([token_id]))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


def free_memory_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits_in_memory(info: GgufInfo, options: LoadOptions) -> None:
    """Refuse, before llama.cpp tries, a CPU-side context that cannot fit in free memory."""
    if options.n_ctx <= 0:
        raise UserError(f"{info.path}: context size must be a positive number of tokens")
    if options.kv_type not in KV_TYPES:
        raise UserError(f"unknown KV cache type {options.kv_type!r} (choose {', '.join(KV_TYPES)})")
    if options.n_gpu_layers != 0 and gpu_offload_supported():
        return  # the GPU plan (models.py) checks VRAM; llama.cpp reports what is left
    kv_bytes = info.kv_cache_bytes(options.n_ctx, KV_TYPES[options.kv_type][1])
    free = free_memory_bytes()
    if kv_bytes > free * MEMORY_HEADROOM:
        raise UserError(
            f"{info.path.name}: a {options.n_ctx:,}-token context needs {kv_bytes / 2**30:.1f} GiB "
            f"of KV cache but only {free / 2**30:.1f} GiB of memory is free; choose a smaller context "
            "or a q8_0 KV cache"
        )


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp build can put layers on a GPU at all."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class ChatTemplate:
    """A model's own Jinja chat template and the special tokens it refers to."""

    source: str
    bos_id: int
    bos_text: str
    eos_text: str
    add_bos: bool


class Engine(Protocol):
    """What chat, summarize, translate and tools need from an engine: tokens in, deltas out."""

    def load(self, options: LoadOptions) -> None: ...

    def unload(self) -> None: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def model_name(self) -> str:
        """The model's file (or served) name, recorded with each reply."""

    @property
    def model_key(self) -> list:
        """What identifies the model's weights in cache keys (name and size)."""

    def tekken(self) -> "Tekken | None":
        """The Tekken vocabulary when the model is a NeMo model (it takes NeMo token ids), else None."""

    def tokenize(self, text: str, special: bool = False) -> list[int]: ...

    def chat_template(self) -> ChatTemplate: ...

    def token_decoder(self) -> TokenDecoder: ...

    def complete(self, prompt_ids: list[int], sampling: SamplingOptions = SamplingOptions(),
                 cancel: CancelToken | None = None, progress: ProgressCallback = no_progress,
                 decoder: TokenDecoder | None = None) -> "Completion": ...


class ModelTurns:
    """First come, first served turns at the model; a waiting request learns how many are ahead.

    Not a lock owned by a thread: Gradio may resume a streaming generator on another thread, so
    the thread that gives a turn back is not always the one that took it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()
        self._busy = False

    def take(self, cancel: CancelToken | None = None, progress: ProgressCallback = no_progress) -> bool:
        """Wait for this request's turn; False when cancelled while waiting, UserError after BUSY_WAIT_S."""
        me, waited, told = object(), 0.0, None
        with self._changed:
            self._queue.append(me)
            try:
                while self._busy or self._queue[0] is not me:
                    ahead = self._queue.index(me) + int(self._busy)
                    if ahead != told:
                        progress(Progress(0, 0, WAITING, ahead=ahead))
                        told = ahead
                    if cancel is not None and cancel.cancelled:
                        return False
                    if waited >= BUSY_WAIT_S:
                        raise UserError(f"the model is busy: another reply or job has held it for {BUSY_WAIT_S} s; "
                                        "stop it or try again later")
                    self._changed.wait(0.1)
                    waited += 0.1
                self._busy = True
                return True
            finally:
                self._queue.remove(me)
                self._changed.notify_all()

    def give_back(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()

    def __enter__(self):
        self.take()
        return self

    def __exit__(self, *_) -> None:
        self.give_back()


class LlamaEngine:
    """The embedded engine: one llama.cpp model in this process, taking turns at it (ModelTurns).

    The only module that touches llama-cpp-python's private attributes."""

    def __init__(self) -> None:
        self._turns = ModelTurns()
        self._llm = None
        self.options: LoadOptions | None = None
        self.info: GgufInfo | None = None

    # -- loading ----------------------------------------------------------------------------
    def load(self, options: LoadOptions) -> None:
        """Load a model (a no-op when the same one is loaded); the old one is freed first."""
        with self._turns:
            if self._llm is not None and self.options == options:
                return
            info = read_gguf_info(options.model_path)
            check_fits_in_memory(info, options)
            self._free()
            self._llm = self._create_llama(info, options)
            self.options, self.info = options, info

    def _create_llama(self, info: GgufInfo, options: LoadOptions):
        import llama_cpp

        type_id = KV_TYPES[options.kv_type][0]
        flash = options.flash_attn
        if flash is None:
            flash = options.kv_type != "f16" or (options.n_gpu_layers != 0 and gpu_offload_supported())
        try:
            return llama_cpp.Llama(
                model_path=str(info.path),
                n_ctx=options.n_ctx,
                n_gpu_layers=options.n_gpu_layers,
                n_threads=options.n_threads or os.cpu_count() or 1,
                n_batch=options.n_batch,
                n_ubatch=options.n_batch,
                flash_attn=flash,
                type_k=type_id,
                type_v=type_id,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"{info.path.name}: llama.cpp could not load this model ({exc})") from None

    def unload(self) -> None:
        with self._turns:
            self._free()

    def _free(self) -> None:
        if self._llm is not None:
            self._llm.close()
        self._llm, self.options, self.info = None, None, None

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    @property
    def llm(self):
        """The llama_cpp.Llama object, for benchmarks and tests against raw llama-cpp-python."""
        if self._llm is None:
            raise UserError("no model is loaded")
        return self._llm

    @property
    def n_ctx(self) -> int:
        return self.llm.n_ctx()

    @property
    def model_name(self) -> str:
        return self._info().path.name

    @property
    def model_key(self) -> list:
        return [self._info().path.name, self._info().file_size]

    def _info(self) -> GgufInfo:
        if self.info is None:
            raise UserError("no model is loaded")
        return self.info

    def tekken(self):
        if not self._info().is_tekken:
            return None
        from app.nemo.tekken import Tekken

        return Tekken.from_gguf(self.info.path)  # cached per file

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """llama.cpp's tokenizer, never adding BOS; `special=False` keeps control text literal."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def is_end_of_generation(self, token_id: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token_id))

    def chat_template(self) -> ChatTemplate:
        llm = self.llm
        source = llm.metadata.get("tokenizer.chat_template", "")
        if not source:
            raise UserError(f"{self.model_name}: the model has no chat template")
        bos, eos = llm.token_bos(), llm.token_eos()
        return ChatTemplate(source, bos, self._token_text(bos), self._token_text(eos),
                            bool(llm._model.add_bos_token()) and bos >= 0)

    def _token_text(self, token_id: int) -> str:
        if token_id < 0:
            return ""
        return self.llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def token_decoder(self) -> TokenDecoder:
        return LlamaTokenDecoder(self.llm)

    # -- generation --------------------------------------------------------------------------
    def complete(
        self,
        prompt_ids: list[int],
        sampling: SamplingOptions = SamplingOptions(),
        cancel: CancelToken | None = None,
        progress: ProgressCallback = no_progress,
        decoder: TokenDecoder | None = None,
    ) -> "Completion":
        """A streaming completion; iterate it for text deltas, then read `.stats`."""
        return Completion(self, list(prompt_ids), sampling, cancel or CancelToken(), progress, decoder)


@dataclass
class Completion:
    engine: LlamaEngine
    prompt_ids: list[int]
    sampling: SamplingOptions
    cancel: CancelToken
    progress: ProgressCallback
    decoder: TokenDecoder | None
    stats: GenerationStats = field(default_factory=GenerationStats)
    token_ids: list[int] = field(default_factory=list)

    def text(self) -> str:
        """Run to the end and return the whole reply."""
        return "".join(self)

    def __iter__(self) -> Iterator[str]:
        """Text deltas; split UTF-8 characters are held back until complete."""
        decoder = self.decoder or self.engine.token_decoder()
        tokens = self.ids()
        try:
            for token in tokens:
                if delta := decoder.feed(token):
                    yield delta
        finally:
            tokens.close()  # an early close of this stream stops generation at once
        if tail := decoder.flush():
            yield tail

    def ids(self) -> Iterator[int]:
        """Generated token ids (end-of-generation not included), during this request's turn at the model."""
        engine = self.engine
        if not engine._turns.take(self.cancel, self.progress):
            self.stats.stop_reason = "cancelled"
            return
        try:
            llm = engine.llm
            if not self.prompt_ids:
                raise UserError("empty prompt")
            n_ctx = llm.n_ctx()
            if len(self.prompt_ids) >= n_ctx:
                raise UserError(
                    f"the prompt is {len(self.prompt_ids):,} tokens but the context holds {n_ctx:,}; "
                    "start a new conversation or raise the context size"
                )
            started = time.perf_counter()
            self._ingest(llm)
            if self.cancel.cancelled:
                self.stats.stop_reason = "cancelled"
                return
            budget = min(self.sampling.max_tokens, n_ctx - len(self.prompt_ids))
            yield from self._generate(llm, budget, started)
        finally:
            engine._turns.give_back()

    def _ingest(self, llm) -> None:
        """Evaluate all but the last prompt token in batches, reusing the cached prefix."""
        prompt = self.prompt_ids
        reuse = min(_common_prefix(llm._input_ids.tolist(), prompt), len(prompt) - 1)
        if reuse < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, reuse, -1):
            reuse = 0
            llm.reset()
        llm.n_tokens = reuse
        self.stats.prompt_tokens, self.stats.cached_tokens = len(prompt), reuse
        todo = prompt[reuse:-1]
        step = llm.n_batch
        for start in range(0, len(todo), step):
            self.progress(Progress(start, len(todo), "reading the prompt"))
            if self.cancel.cancelled:
                return
            llm.eval(todo[start : start + step])
        self.progress(Progress(len(todo), len(todo), "reading the prompt"))

    def _generate(self, llm, budget: int, started: float) -> Iterator[int]:
        s = self.sampling
        if s.seed is not None:
            llm.set_seed(s.seed)
        tokens = llm.generate(
            self.prompt_ids, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, temp=s.temperature,
            repeat_penalty=s.repeat_penalty, reset=True,
        )
        first_at = None
        self.stats.stop_reason = "length"
        try:
            for token in tokens:
                if first_at is None:
                    first_at = time.perf_counter()
                    self.stats.ttft_s = first_at - started
                if self.engine.is_end_of_generation(token):
                    self.stats.stop_reason = "eos"
                    break
                self.token_ids.append(token)
                self.stats.completion_tokens += 1
                yield token
                if self.cancel.cancelled:
                    self.stats.stop_reason = "cancelled"
                    break
                if self.stats.completion_tokens >= budget:
                    break
        finally:
            tokens.close()
            if first_at is not None and self.stats.completion_tokens > 1:
                elapsed = time.perf_counter() - first_at
                self.stats.tokens_per_s = (self.stats.completion_tokens - 1) / elapsed if elapsed else 0.0
