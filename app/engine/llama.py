"""The embedded engine: llama.cpp in this process, streaming from token ids.

It runs up to `parallel` sequences at once in one llama.cpp context (app/engine/batching.py).
Prompt ingestion runs in `n_batch` steps (progress, cancel between steps); generation checks the
cancel token between tokens; each sequence slot keeps its cells, so a prompt reuses the longest
common prefix with what a slot holds.
"""

from __future__ import annotations

import codecs
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.base.config import Settings, app_home
from app.base.errors import UserError
from app.base.gguf_info import GgufInfo, read_gguf_info
from app.base.jobs import WAITING, CancelToken, Progress, ProgressCallback, no_progress
from app.engine.kv_states import GIB, KvStateStore, model_identity
from app.engine.memory import KV_TYPES, auto_parallel, check_fits_in_memory, gpu_offload_supported
from app.runtime import ChatTemplate, GenerationStats, LoadOptions, SamplingOptions, TokenDecoder, TokenLogprob

if TYPE_CHECKING:
    from app.engine.batching import BatchRunner, Sequence
    from app.engine.embedding import Embedder

SILENT_HOLDER_S = Settings.silent_holder_s  # a request holding the model that has not moved this long is gone
READING = "reading the prompt"  # Progress.what while a prompt is read


class LlamaTokenDecoder:
    """Decodes with llama.cpp's own vocabulary, byte-exact across split characters."""

    def __init__(self, llm) -> None:
        self._llm = llm
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._utf8.decode(self._llm.detokenize([token_id]))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class ModelTurns:
    """First come, first served turns at the model's `size` sequence slots; a waiting request
    learns how many are ahead. `whole()` takes every turn (loading and unloading).

    A wait has no time limit while the requests holding the model are alive: each holder says so
    (`alive()`) every time it asks for its next token. Only when no holder has for `silent_s`
    (a stream left open by a client that went away) is a waiting request refused as busy.

    Not a lock owned by a thread: Gradio may resume a streaming generator on another thread, so
    the thread that gives a turn back is not always the one that took it."""

    def __init__(self, size: int = 1, silent_s: float = SILENT_HOLDER_S) -> None:
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()
        self._size = size
        self._busy = 0
        self._whole = False  # a load or unload holds every turn: alive until it returns
        self._heard = time.monotonic()  # when a holder last showed it is alive
        self.silent_s = silent_s

    def take(self, cancel: CancelToken | None = None, progress: ProgressCallback = no_progress) -> bool:
        """Wait for this request's turn; False when cancelled while waiting, UserError when the
        holders have been silent for `silent_s`."""
        return self._take(lambda: self._busy < self._size, 1, cancel, progress)

    def alive(self) -> None:
        """A holder is still at work (it came back for its next token or prompt step)."""
        self._heard = time.monotonic()  # one float written: no lock needed

    def give_back(self) -> None:
        with self._changed:
            self._busy -= 1
            self._heard = time.monotonic()
            self._changed.notify_all()

    @contextmanager
    def whole(self):
        """Every turn at once: waits until no request runs."""
        self._take(lambda: self._busy == 0, self._size)
        self._whole = True
        try:
            yield self
        finally:
            with self._changed:
                self._busy, self._whole, self._heard = 0, False, time.monotonic()
                self._changed.notify_all()

    def resize(self, size: int) -> None:
        """Change the number of turns; only while holding `whole()`."""
        with self._changed:
            self._size = self._busy = size

    def _take(self, free, count: int, cancel: CancelToken | None = None, progress: ProgressCallback = no_progress) -> bool:
        me, told = object(), None
        with self._changed:
            self._queue.append(me)
            try:
                while not free() or self._queue[0] is not me:
                    ahead = self._queue.index(me) + int(self._busy >= self._size)
                    if ahead != told:
                        progress(Progress(0, 0, WAITING, ahead=ahead))
                        told = ahead
                    if cancel is not None and cancel.cancelled:
                        return False
                    if self._busy and not self._whole and time.monotonic() - self._heard >= self.silent_s:
                        raise UserError("engine_busy_silent", seconds=f"{self.silent_s:g}")
                    self._changed.wait(0.1)
                self._busy += count
                self._heard = time.monotonic()
                return True
            finally:
                self._queue.remove(me)
                self._changed.notify_all()


def _flash_attn(options: LoadOptions) -> bool:
    """Flash attention: as asked, else on when the KV cache is quantized or on a GPU."""
    if options.flash_attn is not None:
        return options.flash_attn
    return options.kv_type != "f16" or (options.n_gpu_layers != 0 and gpu_offload_supported())


def _parallel_llama(n_seq_max: int):
    """llama_cpp.Llama whose context runs `n_seq_max` sequences, each in its own K/V buffer of
    n_ctx / n_seq_max cells (not unified: a sequence attends over its own cells only, so its
    numbers, and its text at temperature 0, do not depend on what runs beside it).

    `Llama` has no parameter for it; its context parameters are set here as `Llama.__init__`
    assigns them, before the context is made from them."""
    import llama_cpp

    class ParallelLlama(llama_cpp.Llama):
        @property
        def context_params(self):
            return self.__dict__["context_params"]

        @context_params.setter
        def context_params(self, params) -> None:
            params.n_seq_max, params.kv_unified = n_seq_max, False
            self.__dict__["context_params"] = params

    return ParallelLlama


class LlamaEngine:
    """The embedded engine: one llama.cpp model in this process, running up to `parallel`
    sequences at once in one context (app/engine/batching.py); requests take turns at its
    slots (ModelTurns).

    The only module that touches llama-cpp-python's private attributes."""

    def __init__(self, states_folder: Path | None = None, states_budget_bytes: int = 0,
                 silent_s: float = SILENT_HOLDER_S) -> None:
        """`states_folder`: where conversations' K/V states are kept within `states_budget_bytes`
        (app/engine/kv_states.py); None keeps none. `silent_s`: see ModelTurns."""
        self._states_folder, self._states_budget = states_folder, states_budget_bytes
        self._turns = ModelTurns(silent_s=silent_s)
        self._llm = None
        self._runner: BatchRunner | None = None
        self._embedder: Embedder | None = None  # made on the first `embed`
        self._touched = False  # `llm` was handed out: slot 0's cells may hold something else now
        self.options: LoadOptions | None = None
        self.info: GgufInfo | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaEngine:
        budget = int(settings.kv_states_gib * GIB)
        return cls(app_home() / "kv-states" if budget > 0 else None, budget, settings.silent_holder_s)

    def serves(self, settings: Settings) -> bool:
        return True  # one embedded engine serves every model; `load` switches between them

    # -- loading ----------------------------------------------------------------------------
    def load(self, options: LoadOptions) -> None:
        """Load a model (a no-op when the same one is loaded); the old one is freed first."""
        if self._llm is not None and self.options == options:
            return  # loaded: no need to wait until every running reply has ended
        with self._turns.whole():
            if self._llm is not None and self.options == options:
                return
            info = read_gguf_info(options.model_path)
            parallel = options.parallel or auto_parallel(info, options)
            check_fits_in_memory(info, options, parallel)
            self._free()
            self._llm = self._create_llama(info, options, parallel)
            from app.engine.batching import BatchRunner  # imports llama.cpp

            self._runner = BatchRunner(self._llm._ctx.ctx, self._llm._model.vocab, parallel, self._llm.n_batch,
                                       self._slot_states(info, options))
            self._turns.resize(parallel)
            self.options, self.info = options, info

    def _slot_states(self, info: GgufInfo, options: LoadOptions):
        """Saving and restoring conversations' K/V states for this context; None when kept nowhere."""
        if self._states_folder is None:
            return None
        import llama_cpp

        from app.engine.slot_states import SlotStates

        kind = {"model": model_identity(info.path), "n_ctx": options.n_ctx, "kv_type": options.kv_type,
                "flash_attn": _flash_attn(options), "llama_cpp": llama_cpp.__version__}
        return SlotStates(self._llm._ctx.ctx, KvStateStore(self._states_folder, self._states_budget, kind))

    def _create_llama(self, info: GgufInfo, options: LoadOptions, parallel: int):
        type_id = KV_TYPES[options.kv_type][0]
        flash = _flash_attn(options)
        threads = options.n_threads or os.cpu_count() or 1
        try:
            return _parallel_llama(parallel)(
                model_path=str(info.path),
                n_ctx=options.n_ctx * parallel,
                n_gpu_layers=options.n_gpu_layers,
                n_threads=threads,
                n_threads_batch=threads,  # steps of several sequences are batches too
                n_batch=options.n_batch,
                n_ubatch=options.n_batch,
                flash_attn=flash,
                type_k=type_id,
                type_v=type_id,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise UserError("engine_cannot_load", name=info.path.name, error=str(exc)) from None

    def unload(self) -> None:
        with self._turns.whole():
            self._free()

    def _free(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self._runner is not None:
            self._runner.close()
        if self._llm is not None:
            self._llm.close()
        self._llm, self._runner, self.options, self.info = None, None, None, None

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    @property
    def llm(self):
        """The llama_cpp.Llama object, for benchmarks and tests against raw llama-cpp-python
        (never while completions run). Its own bookkeeping then describes sequence 0, and the
        engine reads it back before its next completion."""
        llm = self._loaded_llm()
        if not self._touched:
            held = self._runner.forget()
            llm.n_tokens = len(held)
            llm._input_ids[: len(held)] = held
            self._touched = True
        return llm

    def _loaded_llm(self):
        if self._llm is None:
            raise UserError("engine_no_model")
        return self._llm

    def _runner_for_request(self) -> BatchRunner:
        llm = self._loaded_llm()
        if self._touched:  # raw llama-cpp-python calls may have changed every sequence's cells
            self._runner.forget()
            self._runner.hold(0, llm._input_ids[: llm.n_tokens].tolist())
            self._touched = False
        return self._runner

    @property
    def n_ctx(self) -> int:
        """Tokens each sequence may hold (the context is this times `parallel`)."""
        self._loaded_llm()
        return self.options.n_ctx

    @property
    def parallel(self) -> int:
        """How many sequences run at once."""
        return len(self._runner.slots) if self._runner is not None else 1

    @property
    def n_batch(self) -> int:
        """Tokens per decoding step (prompt chunks are at most this long)."""
        return self._loaded_llm().n_batch

    def cached_ids(self) -> list[list[int]]:
        """The tokens whose K/V each sequence slot holds, slot by slot."""
        self._runner_for_request()
        return [list(slot.held) for slot in self._runner.slots]

    @property
    def model_name(self) -> str:
        return self._info().path.name

    @property
    def model_key(self) -> list:
        return [self._info().path.name, self._info().file_size]

    def _info(self) -> GgufInfo:
        if self.info is None:
            raise UserError("engine_no_model")
        return self.info

    def tekken(self):
        if not self._info().is_tekken:
            return None
        from app.nemo.tekken import Tekken

        return Tekken.from_gguf(self.info.path)  # cached per file

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """llama.cpp's tokenizer, never adding BOS; `special=False` keeps control text literal."""
        return self._loaded_llm().tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def detokenize(self, ids: list[int]) -> str:
        return self._loaded_llm().detokenize(ids).decode("utf-8", errors="replace")

    def chat_template(self) -> ChatTemplate:
        llm = self._loaded_llm()
        source = llm.metadata.get("tokenizer.chat_template", "")
        if not source:
            raise UserError("engine_no_chat_template", name=self.model_name)
        bos, eos = llm.token_bos(), llm.token_eos()
        return ChatTemplate(source, bos, self._token_text(bos), self._token_text(eos),
                            bool(llm._model.add_bos_token()) and bos >= 0)

    def _token_text(self, token_id: int) -> str:
        if token_id < 0:
            return ""
        return self._loaded_llm().detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def token_decoder(self) -> TokenDecoder:
        return LlamaTokenDecoder(self._loaded_llm())

    def token_bytes(self, token_id: int) -> bytes:
        return self._loaded_llm().detokenize([token_id])

    # -- embeddings --------------------------------------------------------------------------
    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """Mean-pooled, unit-length embeddings of token-id sequences, from a second llama.cpp
        context in embedding mode on the same weights (made on the first call, at most
        EMBED_CTX tokens an input). Takes a turn at the model like a completion."""
        from app.engine.embedding import EMBED_CTX, Embedder

        if not self._turns.take():
            raise UserError("engine_busy")
        try:
            llm = self._loaded_llm()
            if self._embedder is None:
                self._embedder = Embedder(llm._model.model, min(EMBED_CTX, self.options.n_ctx),
                                          llm.context_params.n_threads)
            return [self._embedder.embed(ids) for ids in inputs]
        finally:
            self._turns.give_back()

    # -- generation --------------------------------------------------------------------------
    def complete(
        self,
        prompt_ids: list[int],
        sampling: SamplingOptions = SamplingOptions(),
        cancel: CancelToken | None = None,
        progress: ProgressCallback = no_progress,
        decoder: TokenDecoder | None = None,
    ) -> LlamaCompletion:
        """A streaming completion; iterate it for text deltas, then read `.stats`. Completions
        iterated from several threads run at once, up to `parallel`; the others wait their turn.
        A token id the model does not have (in the prompt or `logit_bias`) is refused here
        (UserError), before it can reach a batch shared with other requests."""
        n_vocab = self._llm.n_vocab() if self._llm is not None else None  # not loaded: it fails when run
        named = [*prompt_ids, *(token for token, _ in sampling.logit_bias)]
        unknown = next((token for token in named if not 0 <= token < n_vocab), None) if n_vocab else None
        if unknown is not None:
            raise UserError("engine_token_out_of_range", id=unknown, name=self.model_name, n_vocab=f"{n_vocab:,}",
                            last=f"{n_vocab - 1:,}")
        return LlamaCompletion(self, list(prompt_ids), sampling, cancel or CancelToken(), progress, decoder)


@dataclass
class LlamaCompletion:
    engine: LlamaEngine
    prompt_ids: list[int]
    sampling: SamplingOptions
    cancel: CancelToken
    progress: ProgressCallback
    decoder: TokenDecoder | None
    stats: GenerationStats = field(default_factory=GenerationStats)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)

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
        """Generated token ids (end-of-generation not included), while this request holds a
        sequence slot of the model."""
        engine = self.engine
        if not engine._turns.take(self.cancel, self.progress):
            self.stats.stop_reason = "cancelled"
            return
        runner, sequence = None, None
        try:
            runner = engine._runner_for_request()
            if not self.prompt_ids:
                raise UserError("engine_empty_prompt")
            n_ctx = engine.n_ctx
            if len(self.prompt_ids) >= n_ctx:
                raise UserError("engine_prompt_too_long", tokens=f"{len(self.prompt_ids):,}", n_ctx=f"{n_ctx:,}")
            budget = min(self.sampling.max_tokens, n_ctx - len(self.prompt_ids))
            sequence = runner.submit(self.prompt_ids, self.sampling, budget, self.cancel)
            yield from self._follow(runner, sequence)
        finally:
            if sequence is not None:
                runner.close_sequence(sequence)
            engine._turns.give_back()

    def _follow(self, runner: BatchRunner, sequence: Sequence) -> Iterator[int]:
        """The sequence's events: progress while it reads its prompt, then its tokens."""
        from app.engine.batching import END, PROGRESS

        stats = self.stats
        stats.prompt_tokens, stats.stop_reason = len(self.prompt_ids), "cancelled"
        first_at = last_at = None
        try:
            while True:
                self.engine._turns.alive()  # back for the next token: those waiting behind wait on
                try:
                    kind, value, extra = sequence.events.get(timeout=0.1)
                except queue.Empty:
                    if self.cancel.cancelled:
                        return
                    continue
                if kind == END:
                    if extra:
                        raise UserError(extra.key, **extra.values)  # a Message from the batch loop
                    stats.stop_reason = value
                    return
                if kind == PROGRESS:
                    stats.cached_tokens = sequence.reused
                    self.progress(Progress(value, extra, READING))
                    if self.cancel.cancelled:
                        return
                    runner.read_on(sequence)
                    continue
                if first_at is None:
                    first_at = extra
                    stats.ttft_s = first_at - sequence.admitted_at
                last_at = extra
                if self.sampling.logprobs is not None:
                    self.logprobs.append(sequence.logprobs[len(self.token_ids)])
                self.token_ids.append(value)
                stats.completion_tokens += 1
                yield value
                if self.cancel.cancelled:
                    return
        finally:
            if first_at is not None and stats.completion_tokens > 1 and last_at > first_at:
                stats.tokens_per_s = (stats.completion_tokens - 1) / (last_at - first_at)
