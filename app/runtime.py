"""The runtime's contract: the `Engine` and `Completion` protocols, the option and stats types,
and the choice of engine.

Engines live in app/engine/: `llama.py` (the embedded llama.cpp engine), `remote.py` (an
OpenAI-compatible server). A new engine kind is one file there and one line in `engine_for`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from app.base.config import Settings
from app.base.jobs import CancelToken, ProgressCallback, no_progress

if TYPE_CHECKING:
    from app.nemo.tekken import Tekken


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
    parallel: int = 1  # sequences at once, each with its own n_ctx tokens; 0: as memory allows


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 0.3
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    grammar: str | None = None  # "json": the reply is JSON (llama.cpp's JSON grammar)
    keep_state: bool = False  # a conversation: its K/V state is saved to disk when its sequence moves on
    presence_penalty: float = 0.0  # OpenAI's penalties on tokens already written (llama.cpp's penalties sampler)
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    logprobs: int | None = None  # report each token's log-probability and this many top alternatives
    json_schema: str | None = None  # JSON text of a schema the reply must match (app/engine/grammar.py)


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability under the model, and the most likely tokens at its place
    as (id, log-probability), most likely first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


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
    def parallel(self) -> int:
        """How many completions run at once (callers iterating from several threads)."""

    @property
    def model_name(self) -> str:
        """The model's file (or served) name, recorded with each reply."""

    @property
    def model_key(self) -> list:
        """What identifies the model's weights in cache keys (name and size)."""

    def tekken(self) -> Tekken | None:
        """The Tekken vocabulary when the model is a NeMo model (it takes NeMo token ids), else None."""

    def tokenize(self, text: str, special: bool = False) -> list[int]: ...

    def chat_template(self) -> ChatTemplate: ...

    def token_decoder(self) -> TokenDecoder: ...

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        """A new engine of this kind for these settings."""

    def serves(self, settings: Settings) -> bool:
        """Whether this engine is the one these settings choose."""

    def complete(self, prompt_ids: list[int], sampling: SamplingOptions = SamplingOptions(),
                 cancel: CancelToken | None = None, progress: ProgressCallback = no_progress,
                 decoder: TokenDecoder | None = None) -> Completion: ...

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """One pooled, unit-length embedding for each token-id sequence."""

    def token_bytes(self, token_id: int) -> bytes:
        """A token's bytes as written in a reply."""



class Completion(Protocol):
    """A streaming completion: iterate it for text deltas (or `ids()` for token ids), then read
    `stats`; closing the iteration early stops generation at once."""

    stats: GenerationStats
    token_ids: list[int]
    logprobs: list[TokenLogprob]  # one per token of `token_ids` when `sampling.logprobs` is set

    def text(self) -> str:
        """Run to the end and return the whole reply."""

    def __iter__(self) -> Iterator[str]: ...

    def ids(self) -> Iterator[int]: ...


ENGINE_KINDS = {  # kind -> "module:class"; a new engine kind is one file in app/engine/ and one line here
    "llama": "app.engine.llama:LlamaEngine",
    "remote": "app.engine.remote:RemoteEngine",
}


def engine_kind(settings: Settings) -> str:
    """Which engine the settings choose: a server's when `remote` names one, else the embedded one."""
    return "remote" if settings.remote.strip() else "llama"


def engine_class(kind: str) -> type:
    module, name = ENGINE_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def engine_for(settings: Settings) -> Engine:
    """A new engine of the kind the settings choose."""
    return engine_class(engine_kind(settings)).from_settings(settings)


def is_engine_for(engine: Engine, settings: Settings) -> bool:
    """Whether `engine` is the one `settings` choose (same kind; for a server, same server, key and width)."""
    return isinstance(engine, engine_class(engine_kind(settings))) and engine.serves(settings)
