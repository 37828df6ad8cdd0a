"""The remote engine: the `Engine` interface on an OpenAI-compatible server (vLLM, NVIDIA NIM,
TensorRT-LLM, llama.cpp's server, llama-cpp-python's server).

NeMo models get the exact Tekken prompt ids on `/v1/completions` (`prompt` as a list of ids), so
prompts stay token for token mistral-common's. A server that refuses ids (found once, when the model
is loaded) gets the chat messages on `/v1/chat/completions` and builds the prompt with its own
template; so do other models, whose template only the server knows. Replies stream as text deltas
with the same `GenerationStats` as the embedded engine; Stop closes the HTTP stream at once.
JSON mode (`SamplingOptions.grammar == "json"`) is asked of the server as the OpenAI API's
`response_format` and, where llama.cpp's servers need it, as a JSON grammar.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Iterator

from app.base.config import Settings
from app.base.errors import UserError
from app.base.jobs import CancelToken, Progress, ProgressCallback, no_progress
from app.base.logs import log_notice
from app.base.messages import Message
from app.engine.grammar import schema_grammar
from app.engine.openai_http import READ_TIMEOUT_S, ServerClient, key_in_clear
from app.engine.remote_tokens import ServerTokenizer, find_tokenizer
from app.runtime import GenerationStats, LoadOptions, SamplingOptions, TokenDecoder

DEFAULT_PARALLEL = 8  # requests a summary or translation may have in flight on a server (--parallel)
IDS_PROBE = [1, 3, 22177, 4]  # <s>[INST]Hello[/INST], NeMo's shortest prompt
IDS_REFUSED = (400, 404, 422, 500)  # how servers refuse it (llama-cpp-python: 500, a validation error)
FINISH_REASONS = {"stop": "eos", "length": "length", "tool_calls": "eos"}
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")
JSON_OBJECT = {"type": "json_object"}


class RemoteEngine:
    """One model on one server. `load` picks the served model (its name comes in
    `LoadOptions.model_path`; "" = the first the server lists) and finds out what the server does."""

    def __init__(self, url: str, key: str = "", parallel: int = 0, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.client = ServerClient(url, key, read_timeout_s)
        self.key = key
        self.parallel = parallel or DEFAULT_PARALLEL
        self.served: str | None = None
        self.takes_prompt_ids = False  # True for NeMo on a server that accepts prompt ids
        self.notices: tuple[Message, ...] = ()  # said once: a key sent in clear, a server that refuses ids
        self._options: LoadOptions | None = None
        self._n_ctx = 0
        self._tokens: ServerTokenizer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteEngine:
        return cls(settings.remote, settings.remote_key, settings.parallel)

    def serves(self, settings: Settings) -> bool:
        return (self.url, self.key, self.parallel) == (settings.remote.strip().rstrip("/"), settings.remote_key,
                                                       settings.parallel or DEFAULT_PARALLEL)

    @property
    def url(self) -> str:
        return self.client.base_url

    # -- loading ----------------------------------------------------------------------------------
    def list_models(self) -> list[dict]:
        """The server's models (`GET /v1/models`), each a dict with at least "id"."""
        answer = self.client.get("models")
        models = [m for m in answer.get("data", []) if isinstance(m, dict) and m.get("id")] \
            if isinstance(answer, dict) else []
        if not models:
            raise UserError("remote_no_models", url=self.url)
        return models

    def load(self, options: LoadOptions) -> None:
        """Check the server and the model; a no-op when the same model is loaded."""
        if self.served is not None and self._options == options:
            return
        models = self.list_models()
        names = [m["id"] for m in models]
        name = options.model_path or names[0]
        if name not in names:
            raise UserError("remote_no_such_model", url=self.url, name=repr(name), names=", ".join(names))
        limit = next(m for m in models if m["id"] == name).get("max_model_len")  # vLLM tells its context
        tokens = find_tokenizer(self.client, name)
        self.served, self._options, self._tokens = name, options, tokens
        self._n_ctx = min(options.n_ctx, int(limit)) if limit else options.n_ctx
        self.takes_prompt_ids = tokens.is_nemo and self._accepts_prompt_ids()
        notices = [key_in_clear(self.url, self.key)]
        if tokens.is_nemo and not self.takes_prompt_ids:
            notices.append(Message("remote_no_prompt_ids", url=self.url))
        self.notices = tuple(filter(None, notices))
        for notice in self.notices:
            log_notice(str(notice))  # the log is in English

    def _accepts_prompt_ids(self) -> bool:
        body = {"model": self.served, "prompt": IDS_PROBE, "max_tokens": 1, "temperature": 0}
        return self.client.post("completions", body, quiet_statuses=IDS_REFUSED) is not None

    def unload(self) -> None:
        self.served, self._options = None, None

    @property
    def loaded(self) -> bool:
        return self.served is not None

    @property
    def n_ctx(self) -> int:
        """The context chosen in settings, capped by the server's own when it says (vLLM's max_model_len)."""
        self._served_model()
        return self._n_ctx

    @property
    def model_name(self) -> str:
        return self._served_model()

    @property
    def model_key(self) -> list:
        return ["remote", self._served_model()]

    def _served_model(self) -> str:
        if self.served is None:
            raise UserError("engine_no_model")
        return self.served

    # -- tokens -----------------------------------------------------------------------------------
    def tekken(self):
        self._served_model()
        return self._tokens.tekken

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Ids as the served model counts them: Tekken for NeMo, else the server's tokenizer."""
        self._served_model()
        return self._tokens.tokenize(text)

    def chat_template(self):
        raise UserError("remote_own_template", url=self.url, name=self._served_model())

    def token_decoder(self) -> TokenDecoder:
        tekken = self.tekken()
        if tekken is None:
            raise UserError("remote_text_not_ids", url=self.url, name=self._served_model())
        return tekken.stream_decoder()

    # -- generation -------------------------------------------------------------------------------
    def complete(self, prompt_ids: list[int], sampling: SamplingOptions = SamplingOptions(),
                 cancel: CancelToken | None = None, progress: ProgressCallback = no_progress,
                 decoder: TokenDecoder | None = None) -> "RemoteCompletion":
        """A streaming completion: ids on /v1/completions, or the messages the ids carry
        (`PromptIds`) on /v1/chat/completions. `decoder` is not needed: the server sends text."""
        self._served_model()
        if sampling.logprobs is not None:
            raise UserError("remote_no_logprobs", url=self.url)
        return RemoteCompletion(self, prompt_ids, sampling, cancel or CancelToken(), progress)

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        raise UserError("remote_no_embeddings", url=self.url)

    def token_bytes(self, token_id: int) -> bytes:
        tekken = self.tekken()
        if tekken is None:
            raise UserError("remote_text_not_ids", url=self.url, name=self.served)
        return tekken.token_bytes(token_id)

    def request(self, prompt_ids: list[int], sampling: SamplingOptions, max_tokens: int) -> tuple[str, dict]:
        """The route and body of one streamed request for this prompt: every `SamplingOptions`
        field in the names the servers read; each server ignores the fields it does not know."""
        body = {"model": self.served, "stream": True, "max_tokens": max_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
                "min_p": sampling.min_p, "repeat_penalty": sampling.repeat_penalty,  # llama.cpp's servers
                "repetition_penalty": sampling.repeat_penalty,  # vLLM's name for the same penalty
                "stream_options": {"include_usage": True}}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.presence_penalty or sampling.frequency_penalty:
            body.update(presence_penalty=sampling.presence_penalty, frequency_penalty=sampling.frequency_penalty)
        if sampling.logit_bias:
            body["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias}
        if self.takes_prompt_ids:
            route = "completions"
            body.update(prompt=list(prompt_ids), skip_special_tokens=False)
        else:
            route = "chat/completions"
            body["messages"] = self._messages(prompt_ids)
        if sampling.json_schema:
            body.update(schema_mode(route, sampling.json_schema))
        elif sampling.grammar == "json":
            body.update(json_mode(route))
        return route, body

    def _messages(self, prompt_ids: list[int]) -> list[dict]:
        messages = getattr(prompt_ids, "messages", None)
        if messages is None:
            raise UserError("remote_no_messages", url=self.url, name=self.served)
        return [{**{k: m[k] for k in MESSAGE_KEYS if m.get(k) is not None}, "content": m.get("content") or ""}
                for m in messages]


def json_mode(route: str) -> dict:
    """The fields that make a server reply with JSON only (`SamplingOptions.grammar == "json"`).
    `response_format` is the OpenAI way: vLLM reads it on both routes, llama.cpp's and
    llama-cpp-python's servers on /v1/chat/completions. On /v1/completions those two read `grammar`
    (GBNF text) instead, so llama.cpp's JSON grammar goes along there (vLLM ignores the field). Not on
    /v1/chat/completions: llama.cpp's server refuses a grammar next to a response_format."""
    fields = {"response_format": JSON_OBJECT}
    if route == "completions":
        from llama_cpp.llama_grammar import JSON_GBNF  # the embedded engine's JSON grammar

        fields["grammar"] = JSON_GBNF
    return fields


def schema_mode(route: str, json_schema: str) -> dict:
    """The fields that make a server reply with JSON matching a schema (`SamplingOptions.json_schema`):
    `response_format` for vLLM and chat routes, and on /v1/completions the same grammar the
    embedded engine uses, for llama.cpp's servers (as `json_mode` does)."""
    schema = json.loads(json_schema)
    fields = {"response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}}
    if route == "completions":
        fields["grammar"] = schema_grammar(schema)
    return fields


@dataclass
class RemoteCompletion:
    """One streamed request; iterate it for text deltas (or `ids()` for NeMo ids), then read `.stats`."""

    engine: RemoteEngine
    prompt_ids: list[int]
    sampling: SamplingOptions
    cancel: CancelToken
    progress: ProgressCallback
    stats: GenerationStats = field(default_factory=GenerationStats)

    def text(self) -> str:
        return "".join(self)

    def __iter__(self) -> Iterator[str]:
        """Text deltas as the server sends them; closing this iterator closes the HTTP stream."""
        n_ctx, prompt = self.engine.n_ctx, self.prompt_ids
        if not prompt:
            raise UserError("engine_empty_prompt")
        if len(prompt) >= n_ctx:
            raise UserError("engine_prompt_too_long", tokens=f"{len(prompt):,}", n_ctx=f"{n_ctx:,}")
        route, body = self.engine.request(prompt, self.sampling, min(self.sampling.max_tokens, n_ctx - len(prompt)))
        stats = self.stats
        stats.prompt_tokens, stats.stop_reason = len(prompt), "cancelled"  # until the stream says otherwise
        self.progress(Progress(0, len(prompt), "reading the prompt"))
        started = time.perf_counter()
        first_at = last_at = finish = None
        events = self.engine.client.stream(route, body, self.cancel)
        try:
            for event in events:
                _read_usage(event.get("usage"), stats)
                for choice in event.get("choices") or ():
                    finish = choice.get("finish_reason") or finish
                    delta = choice.get("text") if route == "completions" else (choice.get("delta") or {}).get("content")
                    if not delta:
                        continue
                    last_at = time.perf_counter()
                    if first_at is None:
                        first_at, stats.ttft_s = last_at, last_at - started
                        self.progress(Progress(len(prompt), len(prompt), "reading the prompt"))
                    stats.completion_tokens += 1  # one token a chunk, unless the server's usage says more
                    yield delta
                    if self.cancel.cancelled:
                        return
            if not self.cancel.cancelled:
                stats.stop_reason = FINISH_REASONS.get(finish, "eos")
        finally:
            events.close()  # Stop: the connection is closed at once; the server sees the client leave
            if first_at is not None and last_at > first_at and stats.completion_tokens > 1:
                stats.tokens_per_s = (stats.completion_tokens - 1) / (last_at - first_at)

    def ids(self) -> Iterator[int]:
        """NeMo ids of the reply, for the function-calling loop: the text is encoded with Tekken and
        the control text the server writes for a call (`[TOOL_CALLS]`) becomes its id."""
        from app.nemo.tekken import TOOL_CALLS

        tekken = self.engine.tekken()
        if tekken is None:
            raise UserError("remote_text_not_nemo_ids", url=self.engine.url, name=self.engine.served)
        marker = "[TOOL_CALLS]"
        for delta in self:
            while marker in delta:
                before, delta = delta.split(marker, 1)
                yield from tekken.encode(before)
                yield TOOL_CALLS
            yield from tekken.encode(delta)


def _read_usage(usage: dict | None, stats: GenerationStats) -> None:
    """The server's own counts, when it sends them (vLLM with include_usage; not llama-cpp-python)."""
    if not usage:
        return
    stats.prompt_tokens = usage.get("prompt_tokens") or stats.prompt_tokens
    stats.completion_tokens = usage.get("completion_tokens") or stats.completion_tokens
    stats.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
