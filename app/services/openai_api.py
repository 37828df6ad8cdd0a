"""The OpenAI API's requests, run on this process's engine: checked, prompted, streamed.

Plain Python, no HTTP (`app/faces/api_server.py` serves it). NeMo models get the exact V3-Tekken
prompt and native function calling: a `[TOOL_CALLS]` reply comes back as OpenAI `tool_calls`
with NeMo's 9-character ids, and OpenAI tool calls and results in the request go into the prompt
as NeMo expects them. Other models use their GGUF chat template, message text kept literal.
A request's problem is an `ApiError` carrying the HTTP status and OpenAI's error type.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.engine.chat_format import NemoChatFormat, chat_format_for
from app.engine.grammar import schema_grammar
from app.nemo.call_schema import SchemaError, tool_calls_schema
from app.nemo import tekken as tk
from app.nemo.prompt import encode_chat, is_tool_call_reply, parse_tool_calls
from app.history import History
from app.services.chat import title_from
from app.runtime import Engine, GenerationStats, SamplingOptions
from app.services.logprobs import LEGACY_MAX_LOGPROBS, MAX_TOP_LOGPROBS, LegacyLogprobs, token_entries

MAX_STOPS = 4


class ApiError(Exception):
    """A request the API refuses: HTTP status, message, OpenAI error type, the parameter at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    @property
    def type(self) -> str:
        return {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ApiRequest:
    """A checked chat or completion request."""

    model: str
    sampling: SamplingOptions
    max_tokens: int | None = None  # None: up to the end of the context
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    messages: tuple = ()
    tools: tuple = ()
    tool_choice: Any = "auto"
    prompt: Any = None  # completions: text or token ids


@dataclass
class Delta:
    """One piece of a reply: text, tool calls, or the end (finish reason and usage)."""

    text: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict | None = None
    logprobs: list[dict] = field(default_factory=list)  # chat's entries for the tokens since the last delta
    stop_sequence: str | None = None  # the stop string that ended the reply


# -- checking a request --------------------------------------------------------------------------
def _number(body: dict, name: str, low: float, high: float, default: float | None) -> float | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a number from {low} to {high}", name)
    return value


def _integer(body: dict, *names: str, low: int = 1) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ApiError(400, f"{name} must be an integer of at least {low}", name)
        return value
    return None


def _stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise ApiError(400, f"stop must be a string or a list of up to {MAX_STOPS} non-empty strings", "stop")
    return tuple(stops)


def parse_request(body: Any, chat: bool) -> ApiRequest:
    """Check a `/v1/chat/completions` (chat) or `/v1/completions` body."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if body.get("n", 1) not in (1, None):
        raise ApiError(400, "only n=1 is supported: this server writes one choice per request", "n")
    temperature = _number(body, "temperature", 0, 2, 1.0)
    sampling = SamplingOptions(temperature=temperature, top_p=_number(body, "top_p", 0, 1, 1.0),
                               top_k=0, min_p=0.0, seed=_integer(body, "seed", low=0),
                               presence_penalty=_number(body, "presence_penalty", -2, 2, 0.0),
                               frequency_penalty=_number(body, "frequency_penalty", -2, 2, 0.0),
                               logit_bias=_logit_bias(body), logprobs=_logprobs(body, chat))
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise ApiError(400, "stream_options must be an object", "stream_options")
    sampling = replace(sampling, **_response_format(body.get("response_format")))
    request = ApiRequest(model=str(body.get("model") or ""), sampling=sampling,
                         max_tokens=_integer(body, "max_completion_tokens", "max_tokens"), stop=_stops(body),
                         stream=bool(body.get("stream")), include_usage=bool(stream_options.get("include_usage")))
    if not chat:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        is_ids = isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
        if not (isinstance(prompt, str) and prompt) and not is_ids:
            raise ApiError(400, "prompt must be a non-empty string or a list of token ids", "prompt")
        return replace(request, prompt=prompt)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "messages")
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise ApiError(400, "tools must be a list", "tools")
    return replace(request, messages=tuple(messages), tools=tuple(tools),
                   tool_choice=_tool_choice(body.get("tool_choice"), tools))


def _logit_bias(body: dict) -> tuple[tuple[int, float], ...]:
    """OpenAI's `{"token id": bias from -100 to 100}`, as (id, bias) pairs."""
    bias = body.get("logit_bias") or {}
    try:
        pairs = tuple((int(token), float(value)) for token, value in bias.items())
    except (AttributeError, TypeError, ValueError):
        pairs = None
    if pairs is None or any(not -100 <= value <= 100 for _, value in pairs):
        raise ApiError(400, 'logit_bias must map token ids to numbers from -100 to 100, e.g. {"1234": -100}',
                       "logit_bias")
    return pairs


def _logprobs(body: dict, chat: bool) -> int | None:
    """How many top alternatives to report per token (None: no log-probabilities). Chat:
    `logprobs: true` with `top_logprobs` 0-20; completions: `logprobs` 0-5."""
    if not chat:
        return _at_most(body, "logprobs", LEGACY_MAX_LOGPROBS)
    top = _at_most(body, "top_logprobs", MAX_TOP_LOGPROBS)
    if not body.get("logprobs"):
        if top:
            raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
        return None
    return top or 0


def _at_most(body: dict, name: str, most: int) -> int | None:
    value = _integer(body, name, low=0)
    if value is not None and value > most:
        raise ApiError(400, f"{name} must be an integer from 0 to {most}", name)
    return value


def _response_format(format_: Any) -> dict:
    """The sampling fields a `response_format` asks for: JSON (`json_object`) or JSON that matches a
    schema (`json_schema`, always strict: llama.cpp's JSON-schema grammar)."""
    format_ = format_ or {"type": "text"}
    kind = format_.get("type") if isinstance(format_, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"grammar": "json"}
    if kind != "json_schema":
        raise ApiError(400, 'response_format must be {"type": "text"}, {"type": "json_object"} or '
                       '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}', "response_format")
    schema = (format_.get("json_schema") or {}).get("schema") if isinstance(format_.get("json_schema"), dict) else None
    if not isinstance(schema, dict):
        raise ApiError(400, "response_format.json_schema.schema must be a JSON schema object", "response_format")
    try:
        schema_grammar(schema)
    except SchemaError as exc:
        raise ApiError(400, f"response_format.json_schema.schema at {exc.where}: {exc.what}", "response_format",
                       "unsupported_schema") from None
    return {"json_schema": json.dumps(schema, ensure_ascii=False)}


def _tool_choice(choice: Any, tools: list) -> Any:
    """"auto", "none", "required", or the name of the one function the model must call."""
    if choice is None:
        return "auto" if tools else "none"
    if choice in ("auto", "none", "required"):
        return choice
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    names = [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)]
    if name not in names:
        raise ApiError(400, 'tool_choice must be "auto", "none", "required" or {"type": "function", '
                       '"function": {"name": one of the tools}}', "tool_choice")
    return name


class _TextAsIs:
    """The decoder for a completion that is text already."""

    def feed(self, text: str) -> str:
        return text

    def flush(self) -> str:
        return ""


# -- finding stop strings in a stream ------------------------------------------------------------
class StopFinder:
    """Holds back text that may be the start of a stop string; says when one is complete."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops, self.pending, self.stopped = stops, "", False
        self.found: str | None = None  # the stop string that was found

    def feed(self, text: str) -> str:
        """The text that is safe to send now."""
        if not self.stops:
            return text
        self.pending += text
        found = [(i, s) for i, s in ((self.pending.find(s), s) for s in self.stops) if i >= 0]
        if found:
            at, self.found = min(found)
            self.stopped = True
            out, self.pending = self.pending[:at], ""
            return out
        keep = max((n for s in self.stops for n in range(1, len(s)) if self.pending.endswith(s[:n])), default=0)
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(out):]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


# -- running a request ---------------------------------------------------------------------------
def usage(stats: GenerationStats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": stats.cached_tokens}}


class OpenAIService:
    """Runs checked requests on the engine `engine()` gives (Settings may swap it); `model_names()`
    are the names a request may use; `prepare()` loads the model the settings name (a no-op once
    it is loaded); with a `history`, API chats are kept there."""

    def __init__(self, engine: Callable[[], Engine], model_names: Callable[[], list[str]],
                 history: History | None = None, prepare: Callable[[], None] = lambda: None) -> None:
        self._engine, self.model_names, self.history, self._prepare = engine, model_names, history, prepare

    @property
    def engine(self) -> Engine:
        return self._engine()

    def prepare(self) -> None:
        try:
            self._prepare()
        except UserError as exc:
            raise ApiError(503, f"no model is ready: {exc}", code="model_not_loaded") from None

    def models(self) -> list[dict]:
        self.prepare()
        created = int(time.time())
        return [{"id": name, "object": "model", "created": created, "owned_by": "nemo-chat"}
                for name in self.model_names()]

    def check_model(self, request: ApiRequest) -> None:
        self.prepare()
        if request.model and request.model not in self.model_names():
            raise ApiError(404, f"the model {request.model!r} does not exist here; GET /v1/models lists "
                           f"what this server runs ({', '.join(self.model_names())})", "model", "model_not_found")

    def prompt_ids(self, request: ApiRequest) -> tuple[list[int], dict | None]:
        """The prompt's token ids, and when the reply must be a tool call, the schema of its calls
        (the prompt then ends with `[TOOL_CALLS]`)."""
        try:
            if request.prompt is not None:
                return self.completion_prompt(request.prompt), None
            chat_format = chat_format_for(self.engine)
            if isinstance(chat_format, NemoChatFormat):
                return self._nemo_prompt(chat_format.tekken, request)
            if request.tools and request.tool_choice != "none":
                raise ApiError(400, "tools need a Mistral NeMo model (native function calling) given its prompt as "
                               f"token ids; this server runs {self.engine.model_name}"
                               + (" on a server that takes no token ids" if self.engine.tekken() else ""), "tools")
            return chat_format.encode([{**m, "content": _plain_text(m)} for m in request.messages]), None
        except UserError as exc:
            raise ApiError(400, str(exc), "messages") from None

    def _nemo_prompt(self, tekken: tk.Tekken, request: ApiRequest) -> tuple[list[int], dict | None]:
        """With `required` or a named function (then the one offered), the reply is `[TOOL_CALLS]`
        and calls that the grammar holds to the offered tools' schemas."""
        choice = request.tool_choice
        tools = [] if choice == "none" else [t for t in request.tools if choice in ("auto", "required")
                                             or t.get("function", {}).get("name") == choice]
        ids = encode_chat(tekken, list(request.messages), tools or None)
        if not tools or choice == "auto":
            return ids, None
        return ids + [tk.TOOL_CALLS], tool_calls_schema(tools, None if choice == "required" else choice)

    def completion_prompt(self, prompt: str | list[int]) -> list[int]:
        """Text as the model reads a prompt (its BOS first), or token ids as given."""
        if isinstance(prompt, list):
            return list(prompt)  # ids are taken as given: the one way to send control tokens
        tekken = self.engine.tekken()
        if tekken is not None:
            return [tk.BOS, *tekken.encode(prompt)]
        template = self.engine.chat_template()
        return ([template.bos_id] if template.add_bos else []) + self.engine.tokenize(prompt)

    def run(self, request: ApiRequest, cancel: CancelToken) -> Iterator[Delta]:
        """The reply as deltas; the last one has the finish reason and the usage. A request the
        engine cannot take (a prompt too long, a token id it does not have) raises ApiError here,
        before any delta. With a history, a chat that ends is kept there as a conversation (its
        messages, then the reply)."""
        self.prepare()
        return self._kept(request, self._reply(request, cancel), cancel)

    def _kept(self, request: ApiRequest, replies: Iterator[Delta], cancel: CancelToken) -> Iterator[Delta]:
        deltas = []
        for delta in replies:
            deltas.append(delta)
            yield delta
        if self.history is not None and request.messages and not cancel.cancelled:
            self._keep(request, deltas)

    def _keep(self, request: ApiRequest, deltas: list[Delta]) -> None:
        turns = [(m.get("role"), _plain_text(m)) for m in request.messages if isinstance(m, dict)]
        turns = [(role, text) for role, text in turns if role in ("user", "assistant") and text]
        reply = "".join(d.text for d in deltas)
        first_user = next((text for role, text in turns if role == "user"), "API chat")
        with self.history.database.transaction():
            cid = self.history.create_conversation(title_from(first_user))
            for role, text in [*turns, ("assistant", reply)]:
                meta = {"model": self.engine.model_name} if role == "assistant" else {}
                self.history.add_message(cid, role, text, **meta)

    def _reply(self, request: ApiRequest, cancel: CancelToken) -> Iterator[Delta]:
        """Checks the request and starts it on the engine now; iterate the result for its deltas."""
        engine = self.engine  # one engine for the whole reply, even if Settings swap it meanwhile
        prompt, calls = self.prompt_ids(request)
        forced = calls is not None
        room = engine.n_ctx - len(prompt)
        if room <= 0:
            raise ApiError(413, f"the prompt is {len(prompt):,} tokens but the context holds {engine.n_ctx:,}",
                           "messages", "context_length_exceeded")
        sampling = replace(request.sampling, max_tokens=min(request.max_tokens or room, room))
        if forced:
            sampling = replace(sampling, grammar=None, json_schema=json.dumps(calls, ensure_ascii=False))
        try:
            completion = engine.complete(prompt, sampling, cancel)
        except UserError as exc:  # the engine refused the prompt itself (e.g. a token id out of range)
            raise ApiError(400, str(exc), "prompt") from None
        return self._deltas(engine, completion, request, forced)

    def _deltas(self, engine: Engine, completion, request: ApiRequest, forced: bool) -> Iterator[Delta]:
        tekken = engine.tekken()
        stops, reply = StopFinder(request.stop), [tk.TOOL_CALLS] if forced else []
        if tekken is not None:  # NeMo: ids, decoded here, so that tool calls are seen as ids
            decoder, tokens = tekken.stream_decoder(), completion.ids()
        else:  # other models: the engine's text deltas (a server sends text, not ids)
            decoder, tokens = _TextAsIs(), iter(completion)
        sent = 0  # log-probabilities handed out so far

        def new_logprobs() -> list[dict]:
            nonlocal sent
            if request.sampling.logprobs is None:
                return []
            fresh, sent = completion.logprobs[sent:], len(completion.logprobs)
            return token_entries(fresh, engine.token_bytes) if fresh else []

        try:
            for token in tokens:
                reply.append(token)
                if tekken is not None and is_tool_call_reply(reply):
                    continue  # a tool call is sent whole, once it is complete
                if text := stops.feed(decoder.feed(token)):
                    yield Delta(text, logprobs=new_logprobs())
                if stops.stopped:
                    break
        finally:
            tokens.close()
        stats = completion.stats
        if tekken is not None and is_tool_call_reply(reply):
            calls = parse_tool_calls(reply, tekken)
            if not any(call.error for call in calls):
                yield Delta(tool_calls=[call.to_openai() for call in calls], finish_reason="tool_calls",
                            usage=usage(stats), logprobs=new_logprobs())
                return
            yield Delta(tekken.decode(reply[1:]))  # not a call after all: the text as written
        if not stops.stopped and (tail := stops.feed(decoder.flush()) + stops.flush()):
            yield Delta(tail, logprobs=new_logprobs())
        finish = "length" if stats.stop_reason == "length" and not stops.stopped else "stop"
        yield Delta(finish_reason=finish, usage=usage(stats), logprobs=new_logprobs(), stop_sequence=stops.found)


def _plain_text(message: Any) -> str:
    """A message's content as text (a list of text parts joined), for template models."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        return "\n\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def completion_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def reply_json(request: ApiRequest, deltas: list[Delta], chat: bool, model: str) -> dict:
    """The non-streamed response body."""
    text = "".join(d.text for d in deltas)
    calls = [c for d in deltas for c in d.tool_calls]
    end = deltas[-1]
    base = {"id": completion_id(chat), "created": int(time.time()), "model": model, "usage": end.usage}
    entries = [entry for d in deltas for entry in d.logprobs] if request.sampling.logprobs is not None else None
    if not chat:
        logprobs = LegacyLogprobs().shape(entries) if entries is not None else None
        return {**base, "object": "text_completion",
                "choices": [{"index": 0, "text": text, "finish_reason": end.finish_reason, "logprobs": logprobs}]}
    message = {"role": "assistant", "content": None if calls else text}
    if calls:
        message["tool_calls"] = calls
    return {**base, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": end.finish_reason,
                         "logprobs": None if entries is None else {"content": entries, "refusal": None}}]}


class ChunkWriter:
    """Turns a streamed reply's deltas into chunks (each one server-sent event); one id per reply."""

    def __init__(self, request: ApiRequest, chat: bool, model: str) -> None:
        self.request, self.chat, self.first = request, chat, True
        self.legacy = LegacyLogprobs()  # completions: text offsets run on across chunks
        self.base = {"id": completion_id(chat), "created": int(time.time()), "model": model,
                     "object": "chat.completion.chunk" if chat else "text_completion"}

    @property
    def wants_logprobs(self) -> bool:
        return self.request.sampling.logprobs is not None

    def chunks(self, delta: Delta) -> list[dict]:
        if self.chat:
            body: dict = {"role": "assistant"} if self.first else {}
            if delta.text:
                body["content"] = delta.text
            if delta.tool_calls:
                body["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta.tool_calls)]
            choice = {"index": 0, "delta": body, "finish_reason": delta.finish_reason,
                      "logprobs": {"content": delta.logprobs, "refusal": None} if self.wants_logprobs else None}
        else:
            choice = {"index": 0, "text": delta.text, "finish_reason": delta.finish_reason,
                      "logprobs": self.legacy.shape(delta.logprobs) if self.wants_logprobs else None}
        self.first = False
        chunks = [{**self.base, "choices": [choice]}]
        if delta.usage is not None and self.request.include_usage:
            chunks.append({**self.base, "choices": [], "usage": delta.usage})
        return chunks


def as_event(data: dict | str) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode("utf-8")
