"""Mistral NeMo prompts (V3-Tekken): OpenAI-style messages and tools to token ids, and back
from a `[TOOL_CALLS]` reply to tool calls.

Same ids as mistral-common's `encode_chat_completion` for NeMo: consecutive messages of one role
merge ("\\n\\n"), system messages go on the last user turn, tools before the last `[INST]`,
assistant text is right-stripped of spaces and ends with `</s>`. Every text segment is tokenized
on its own, so text never turns into a control token.
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass, field
from typing import Any, Sequence

from app.nemo import tekken as tk
from app.base.errors import UserError

ROLES = ("system", "user", "assistant", "tool")
NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
CALL_ID_RE = re.compile(r"[a-zA-Z0-9]{9}")
JOIN = "\n\n"


@dataclass(frozen=True)
class ToolCall:
    """One call from the model; `error` says why it could not be understood (then run nothing)."""

    name: str
    arguments: dict
    id: str
    error: str | None = None

    def to_openai(self) -> dict:
        """The call as an entry of an assistant message's `tool_calls`."""
        arguments = json.dumps(self.arguments, ensure_ascii=False)
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": arguments}}


@dataclass
class _Turn:
    role: str
    texts: list[str] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    result: dict | None = None

    @property
    def text(self) -> str:
        return JOIN.join(t for t in self.texts if t)


def encode_request(tekken: tk.Tekken, request: Any) -> list[int]:
    """Prompt ids for a {"messages": [...], "tools": [...]} request."""
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        raise UserError("prompt_request_shape")
    return encode_chat(tekken, request["messages"], request.get("tools"))


def encode_chat(tekken: tk.Tekken, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> list[int]:
    """Prompt ids for OpenAI-style `messages`, offering `tools` (OpenAI function schemas)."""
    turns, system = _turns(messages)
    tools_json = json.dumps([_tool(i, t) for i, t in enumerate(tools)], ensure_ascii=False) if tools else ""
    last_user = max(i for i, turn in enumerate(turns) if turn.role == "user")
    ids = [tk.BOS]
    for i, turn in enumerate(turns):
        if turn.role == "user":
            if i == last_user and tools:
                ids += [tk.TOOLS, *tekken.encode(tools_json), tk.TOOLS_END]
            text = system + JOIN + turn.text if i == last_user and system else turn.text
            ids += [tk.INST, *tekken.encode(text), tk.INST_END]
        elif turn.role == "tool":
            ids += [tk.TOOL_RESULTS, *tekken.encode(json.dumps(turn.result, ensure_ascii=False)), tk.TOOL_RESULTS_END]
        elif turn.calls:
            ids += [tk.TOOL_CALLS, *tekken.encode(json.dumps(turn.calls, ensure_ascii=False)), tk.EOS]
        else:
            ids += [*tekken.encode(turn.text.rstrip(" ")), tk.EOS]
    return ids


def _turns(messages: Sequence[dict]) -> tuple[list[_Turn], str]:
    """Messages merged into turns, with the joined system prompt."""
    if not messages:
        raise UserError("prompt_no_messages")
    turns: list[_Turn] = []
    system: list[str] = []
    previous = None
    for i, message in enumerate(messages):
        role = _role(i, message)
        text = _text(i, message)
        if role == "system":
            if message.get("content"):
                system.append(text)
        elif role == "tool":
            turns.append(_Turn("tool", result=_tool_result(i, message, text)))
        elif role == previous:
            turns[-1].texts.append(text)
        else:
            turns.append(_Turn(role, [text]))
        if role == "assistant":
            turns[-1].calls += _calls(i, message, text)
        previous = role
    if not turns or turns[0].role != "user":
        turns.insert(0, _Turn("user"))
    for turn in turns:
        if turn.role == "assistant" and turn.calls and turn.text:
            raise UserError("prompt_turn_text_and_calls")
        if turn.role == "assistant" and not turn.calls and not turn.text:
            raise UserError("prompt_turn_empty")
    return turns, JOIN.join(system)


def _role(i: int, message: Any) -> str:
    if not isinstance(message, dict):
        raise UserError("prompt_message_not_object", i=i)
    role = message.get("role")
    if role not in ROLES:
        raise UserError("prompt_bad_role", i=i, roles=", ".join(ROLES), role=repr(role))
    return role


def _text(i: int, message: dict) -> str:
    """The message's content as one string (text parts joined with a blank line)."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return JOIN.join(p["text"] for p in content if p.get("text"))
    raise UserError("prompt_bad_content", i=i)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _calls(i: int, message: dict, text: str) -> list[dict]:
    calls = message.get("tool_calls") or []
    if calls and text:
        raise UserError("prompt_message_text_and_calls", i=i)
    return [_call(i, call) for call in calls]


def _call(i: int, call: Any) -> dict:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not NAME_RE.fullmatch(str(function.get("name"))):
        raise UserError("prompt_bad_call_name", i=i)
    call_id = call.get("id")
    if not isinstance(call_id, str) or not CALL_ID_RE.fullmatch(call_id):
        raise UserError("prompt_bad_call_id", i=i, id=repr(call_id))
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        arguments = json.loads(json.dumps(arguments))
    elif arguments is None or isinstance(arguments, str):
        arguments = _json_or_text(arguments or "{}")
    else:
        raise UserError("prompt_bad_arguments", i=i)
    return {"name": function["name"], "arguments": arguments, "id": call_id}


def _tool_result(i: int, message: dict, text: str) -> dict:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not CALL_ID_RE.fullmatch(call_id):
        raise UserError("prompt_bad_tool_call_id", i=i)
    return {"content": _json_or_text(text or "{}"), "call_id": call_id}


def _tool(i: int, tool: Any) -> dict:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or tool.get("type", "function") != "function":
        raise UserError("prompt_bad_tool", i=i)
    if not NAME_RE.fullmatch(str(function.get("name"))):
        raise UserError("prompt_bad_tool_name", i=i)
    description = function.get("description") or ""
    return {
        "type": "function",
        "function": {"name": function["name"], "description": description, "parameters": function.get("parameters") or {}},
    }


def new_tool_call_id() -> str:
    """A fresh call id of the form NeMo uses: 9 letters or digits."""
    return "".join(random.choices(string.ascii_letters + string.digits, k=9))


def is_tool_call_reply(ids: Sequence[int]) -> bool:
    """Whether a reply (model ids) is a tool call: it starts with `[TOOL_CALLS]`."""
    return bool(ids) and ids[0] == tk.TOOL_CALLS


def parse_tool_calls(reply: str | Sequence[int], tekken: tk.Tekken | None = None) -> list[ToolCall]:
    """The calls in a `[TOOL_CALLS]` reply, given as model ids or as its text.

    Ids that do not start with `[TOOL_CALLS]` hold no calls. Text is the JSON after the marker
    (the marker itself may be included). A call that cannot be understood comes back with `error`.
    """
    if not isinstance(reply, str):
        if not is_tool_call_reply(reply):
            return []
        reply = (tekken or tk.Tekken.default()).decode(reply)
    text = reply.strip().removeprefix("[TOOL_CALLS]").strip()
    try:
        items = _json_values(text)
    except json.JSONDecodeError as e:
        return [_failed("", f"the tool call is not valid JSON: {e.msg} at character {e.pos}")]
    return [_tool_call(item) for item in items] or [_failed("", "the tool call list is empty")]


def _json_values(text: str) -> list:
    """The JSON values of `text` one after another (lists flattened), as `[a][b]` replies hold."""
    decoder, values, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        value, pos = decoder.raw_decode(text, pos)
        values += value if isinstance(value, list) else [value]
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
    return values


def _tool_call(item: Any) -> ToolCall:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return _failed("", 'each tool call must be an object with a "name"')
    name, arguments = item["name"], item.get("arguments", {})
    if isinstance(arguments, str):
        arguments = _json_or_text(arguments or "{}")
    if not isinstance(arguments, dict):
        return _failed(name, "the arguments must be a JSON object")
    call_id = item.get("id")
    if not isinstance(call_id, str) or not CALL_ID_RE.fullmatch(call_id):
        call_id = new_tool_call_id()
    return ToolCall(name, arguments, call_id)


def _failed(name: str, error: str) -> ToolCall:
    return ToolCall(name, {}, new_tool_call_id(), error)
