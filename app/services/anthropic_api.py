"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) over the OpenAI service.

A Messages request becomes an OpenAI-style request (system text, messages, tools) and runs through
`OpenAIService`, so NeMo models get the same exact prompt and native function calling: `tool_use`
blocks are NeMo's `[TOOL_CALLS]` (with NeMo's 9-character ids) and `tool_result` blocks its
`[TOOL_RESULTS]`. The reply comes back as a message, or as Anthropic's event sequence
(message_start, content_block_start/delta/stop, message_delta, message_stop). Errors have
Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from app.runtime import SamplingOptions
from app.services.openai_api import ApiError, ApiRequest, Delta

MAX_STOP_SEQUENCES = 16
STOP_REASONS = {"tool_calls": "tool_use", "length": "max_tokens"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


def error_body(exc: ApiError) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(exc.status, "api_error"), "message": exc.message}}


# -- a request -----------------------------------------------------------------------------------
def parse_messages(body: Any, count_only: bool = False) -> ApiRequest:
    """Check a `/v1/messages` body (`count_only`: a count_tokens body, which has no max_tokens)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    max_tokens = body.get("max_tokens")
    if not count_only and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ApiError(400, "max_tokens: an integer of at least 1 is required", "max_tokens")
    given = body.get("messages")
    if not isinstance(given, list) or not given:
        raise ApiError(400, "messages: a non-empty list is required", "messages")
    messages = _system(body.get("system")) + [m for message in given for m in _message(message)]
    tools = [_tool(tool) for tool in body.get("tools") or []]
    sampling = SamplingOptions(temperature=_number(body, "temperature", 1.0, 1.0), top_p=_number(body, "top_p", 1.0, 1.0),
                               top_k=_top_k(body), min_p=0.0)
    return ApiRequest(model=str(body.get("model") or ""), sampling=sampling, max_tokens=max_tokens,
                      stop=_stop_sequences(body), stream=bool(body.get("stream")), messages=tuple(messages),
                      tools=tuple(tools), tool_choice=_tool_choice(body.get("tool_choice"), tools))


def _number(body: dict, name: str, high: float, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise ApiError(400, f"{name}: a number from 0 to {high} is required", name)
    return value


def _top_k(body: dict) -> int:
    value = body.get("top_k", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(400, "top_k: an integer of at least 0 is required", "top_k")
    return value


def _stop_sequences(body: dict) -> tuple[str, ...]:
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, f"stop_sequences: a list of up to {MAX_STOP_SEQUENCES} non-empty strings is required",
                       "stop_sequences")
    return tuple(stops)


def _text(blocks: Any, where: str) -> str:
    """The text of a string or of a list of text blocks."""
    if isinstance(blocks, str):
        return blocks
    if isinstance(blocks, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in blocks):
        return "\n\n".join(str(b.get("text", "")) for b in blocks)
    raise ApiError(400, f"{where}: only text is supported here (a string or text blocks)", where)


def _system(system: Any) -> list[dict]:
    return [{"role": "system", "content": _text(system, "system")}] if system else []


def _message(message: Any) -> list[dict]:
    """One Anthropic message as OpenAI-style messages: tool results become `tool` messages."""
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise ApiError(400, 'messages: each needs a role of "user" or "assistant" and content', "messages")
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        raise ApiError(400, "messages: content must be a string or a list of blocks", "messages")
    texts, calls, results = [], [], []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use" and message["role"] == "assistant":
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": {
                "name": str(block.get("name", "")), "arguments": json.dumps(block.get("input") or {})}})
        elif kind == "tool_result" and message["role"] == "user":
            results.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
                            "content": _text(block.get("content") or "", "tool_result")})
        else:
            raise ApiError(400, f"messages: a {kind!r} block is not supported in a {message['role']} message "
                           "(text, tool_use and tool_result are)", "messages")
    text = "\n\n".join(texts)
    if message["role"] == "assistant":
        return [{"role": "assistant", "content": text, **({"tool_calls": calls} if calls else {})}]
    return results + ([{"role": "user", "content": text}] if text or not results else [])


def _tool(tool: Any) -> dict:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or tool.get("type") not in (None, "custom"):
        raise ApiError(400, "tools: each needs a name and an input_schema (Anthropic's server tools are not "
                       "served here)", "tools")
    return {"type": "function", "function": {"name": tool["name"], "description": tool.get("description", ""),
                                             "parameters": tool.get("input_schema") or {"type": "object"}}}


def _tool_choice(choice: Any, tools: list[dict]) -> Any:
    """OpenAI's tool_choice for Anthropic's {"type": "auto" | "any" | "tool" | "none"}."""
    if choice is None:
        return "auto" if tools else "none"
    kind = choice.get("type") if isinstance(choice, dict) else None
    names = [t["function"]["name"] for t in tools]
    if kind in ("auto", "none"):
        return kind
    if kind == "any" and tools:
        return "required"
    if kind == "tool" and choice.get("name") in names:
        return choice["name"]
    raise ApiError(400, 'tool_choice: {"type": "auto"}, {"type": "any"}, {"type": "none"} or '
                   '{"type": "tool", "name": one of the tools} is required', "tool_choice")


# -- a reply -------------------------------------------------------------------------------------
def message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def _tool_use(call: dict) -> dict:
    try:
        arguments = json.loads(call["function"]["arguments"])
    except ValueError:
        arguments = {}
    return {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": arguments}


def _stop(end: Delta) -> tuple[str, str | None]:
    if end.stop_sequence is not None:
        return "stop_sequence", end.stop_sequence
    return STOP_REASONS.get(end.finish_reason, "end_turn"), None


def _usage(end: Delta) -> dict:
    usage = end.usage or {}
    return {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)}


def message_json(deltas: list[Delta], model: str) -> dict:
    """The non-streamed response body."""
    text = "".join(d.text for d in deltas)
    calls = [c for d in deltas for c in d.tool_calls]
    content = ([{"type": "text", "text": text}] if text else []) + [_tool_use(c) for c in calls]
    reason, sequence = _stop(deltas[-1])
    return {"id": message_id(), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": reason, "stop_sequence": sequence, "usage": _usage(deltas[-1])}


class EventWriter:
    """Turns a streamed reply's deltas into Anthropic's events, as (event name, data) pairs."""

    def __init__(self, model: str, input_tokens: int) -> None:
        self.model, self.input_tokens = model, input_tokens
        self.index, self.text_open = 0, False

    def start(self) -> list[tuple[str, dict]]:
        message = {"id": message_id(), "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message})]

    def events(self, delta: Delta) -> list[tuple[str, dict]]:
        events = []
        if delta.text:
            if not self.text_open:
                events.append(self._block_start({"type": "text", "text": ""}))
                self.text_open = True
            events.append(("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                   "delta": {"type": "text_delta", "text": delta.text}}))
        for call in delta.tool_calls:
            events += self._close_text()
            use = _tool_use(call)
            events.append(self._block_start({**use, "input": {}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(use["input"], ensure_ascii=False)}}))
            events.append(self._block_stop())
        if delta.finish_reason is not None:
            events += self._close_text()
            reason, sequence = _stop(delta)
            events.append(("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                             "usage": {"output_tokens": _usage(delta)["output_tokens"]}}))
            events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _block_start(self, block: dict) -> tuple[str, dict]:
        return "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block}

    def _block_stop(self) -> tuple[str, dict]:
        self.index += 1
        return "content_block_stop", {"type": "content_block_stop", "index": self.index - 1}

    def _close_text(self) -> list[tuple[str, dict]]:
        if not self.text_open:
            return []
        self.text_open = False
        return [self._block_stop()]


def as_named_event(name: str, data: dict) -> bytes:
    """One server-sent event with its name (Anthropic's streams name each event)."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")
