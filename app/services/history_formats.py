"""Reading conversation files made elsewhere: our own export, OpenAI-style messages, ChatGPT's
`conversations.json` and Open WebUI's chat export, into one neutral shape (a tree per conversation).

Pure functions over parsed JSON; nothing here touches the database. A file that is not one of
these formats, or one over a cap (nesting depth, JSON objects and lists, characters in one text),
is refused with a `UserError` naming what is wrong; a conversation or message that cannot be used
is skipped and counted, with the reason. Reading takes time in proportion to the file's size.
Tool results of other apps (plain text) become tool steps as the chat service saves them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from app.base.errors import UserError
from app.base.messages import Message as Note
from app.history import MAX_REPLY_TOKENS, MAX_TEMPERATURE
from app.nemo.prompt import CALL_ID_RE, NAME_RE

FORMAT_NAME, FORMAT_VERSION = "nemo-chat", 1
ROLES = {"user", "assistant", "system", "tool", "document"}
EXTRA = ("prompt_tokens", "cached_tokens", "completion_tokens", "tokens_per_s", "ttft_s")
MAX_DEPTH = 32  # JSON nesting; the formats read here need about 10 levels
MAX_NODES = 10_000_000  # JSON objects and lists in one file (a 100,000-message export has about 200,000)
MAX_TEXT_CHARS = 8_000_000  # characters in one JSON string (a whole book is about 1,000,000)


@dataclass
class Message:
    key: str  # unique within its conversation
    parent: str | None  # the message before it on its branch
    role: str
    content: str
    created_at: float | None = None
    status: str = "complete"
    model: str | None = None
    extra: dict = field(default_factory=dict)  # token counts and speed, as our export writes them
    tool: dict | None = None  # OpenAI's fields of a tool call or result: tool_calls, or tool_call_id and name


@dataclass
class Conversation:
    title: str
    created_at: float | None
    messages: list[Message]  # parents before children
    current: str | None = None  # the last message of the branch shown; None: the last one
    source: str = ""  # what identifies it in its file, so a second import adds nothing twice
    settings: dict = field(default_factory=dict)  # its own system prompt, temperature, max reply tokens
    pinned: bool = False  # kept at the top of the sidebar


@dataclass
class Parsed:
    conversations: list[Conversation] = field(default_factory=list)
    skipped: list[Note] = field(default_factory=list)  # one reason per thing left out, for the faces to word


def read_conversations(data: Any, name: str) -> Parsed:
    """The conversations in a parsed JSON file; `name` is the file's name for messages."""
    check_bounds(data, name)
    if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise UserError("import_bad_version", name=name, version=repr(version), ours=FORMAT_VERSION)
        return _each(data.get("conversations"), name, _ours)
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return _each([data], name, _openai)
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        first = data[0]
        if "mapping" in first:
            return _each(data, name, _chatgpt)
        if isinstance(first.get("chat"), dict):
            return _each(data, name, _open_webui)
        if isinstance(first.get("messages"), list):
            return _each(data, name, _openai)
    raise UserError("import_unknown_format", name=name)


def too_deep(name: str) -> UserError:
    return UserError("import_too_deep", name=name, levels=MAX_DEPTH)


def check_bounds(data: Any, name: str) -> None:
    """Refuse parsed JSON over the caps, level by level (no recursion, linear in its size)."""
    level, depth, nodes = [data], 0, 0
    while True:
        dicts = [item for item in level if type(item) is dict]
        lists = [item for item in level if type(item) is list]
        if not dicts and not lists:
            return
        depth += 1
        nodes += len(dicts) + len(lists)
        if depth > MAX_DEPTH:
            raise too_deep(name)
        if nodes > MAX_NODES:
            raise UserError("import_too_many_nodes", name=name, nodes=f"{MAX_NODES:,}")
        level = [*chain.from_iterable(map(dict.values, dicts)), *chain.from_iterable(lists)]
        if max(map(len, [value for value in level if type(value) is str]), default=0) > MAX_TEXT_CHARS:
            raise UserError("import_text_too_long", name=name, chars=f"{MAX_TEXT_CHARS:,}")


def _each(items: Any, name: str, read) -> Parsed:
    if not isinstance(items, list):
        raise UserError("import_not_a_list", name=name)
    parsed = Parsed()
    for i, item in enumerate(items):
        where = Note("import_where_conversation", number=i + 1)
        try:
            conversation = read(item, parsed.skipped, where)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            parsed.skipped.append(Note("import_skip_unreadable", where=where, error=f"{type(exc).__name__}: {exc}"))
            continue
        _as_saved_here(conversation)
        if not conversation.messages:
            parsed.skipped.append(Note("import_skip_no_messages", number=i + 1,
                                       title=conversation.title or Note("chat_untitled")))
            continue
        conversation.source = conversation.source or _fingerprint(conversation)
        parsed.conversations.append(conversation)
    return parsed


def _fingerprint(conversation: Conversation) -> str:
    """A stable identity for a conversation without ids of its own: its title and messages."""
    body = json.dumps([conversation.title, [(m.role, m.content) for m in conversation.messages]], ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def _as_saved_here(conversation: Conversation) -> None:
    """Tool calls and results made elsewhere, as the steps the chat service saves (role `tool`, a
    JSON record of the call and its result): one step per result; a `document` that is not the
    record of an attached document becomes the user's text. An assistant message that only
    called tools is left out, its calls live on in their steps. Our own steps are kept as they are."""
    calls: dict[str, tuple[dict, int]] = {}  # call id -> (OpenAI call, round)
    gone: dict[str, str | None] = {}  # key of a message left out -> the message before it
    kept, rounds = [], 0
    for message in conversation.messages:
        message.parent = gone.get(message.parent, message.parent)
        if message.role == "assistant" and message.tool:
            rounds += 1
            calls.update((str(call.get("id")), (call, rounds)) for call in message.tool["tool_calls"]
                         if isinstance(call, dict))
            if not message.content.strip():
                gone[message.key] = message.parent
                continue
        elif message.role == "document":
            message.role, message.content = _document(message.content)
        elif message.role == "tool" and (message.tool or not _is_step(message.content)):
            call_id = str((message.tool or {}).get("tool_call_id") or "")
            call, step_round = calls.get(call_id) or ({}, rounds + 1)
            rounds = max(rounds, step_round)
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            name = str(function.get("name") or (message.tool or {}).get("name") or "tool")
            message.content = json.dumps({
                "id": _call_id(call_id or message.key), "round": step_round, "error": None,
                "name": name if NAME_RE.fullmatch(name) else re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64],
                "arguments": _arguments(function.get("arguments")),
                "result": message.content, "content": message.content}, ensure_ascii=False)
        kept.append(message)
    conversation.messages = kept
    conversation.current = gone.get(conversation.current, conversation.current)


def _is_step(content: str) -> bool:
    try:
        step = json.loads(content)
    except ValueError:
        return False
    return isinstance(step, dict) and isinstance(step.get("name"), str) and "arguments" in step


def _document(content: str) -> tuple[str, str]:
    """An attached document's role and record as the chat service reads them (its `text` is what
    the model is given: the note when the file has none); text that is no such record is the user's."""
    try:
        record = json.loads(content)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("title", "note")):
        return "user", content
    if not isinstance(record.get("text"), str):
        content = json.dumps({**record, "text": record["note"]}, ensure_ascii=False)
    return "document", content


def _call_id(given: str) -> str:
    """A call id as NeMo writes them (9 letters or digits): the given one, or one made from it."""
    return given if CALL_ID_RE.fullmatch(given) else hashlib.sha256(given.encode()).hexdigest()[:9]


def _arguments(arguments: Any) -> Any:
    """A call's arguments as JSON (OpenAI sends them as a JSON string); text that is no JSON stays text."""
    if not isinstance(arguments, str):
        return {} if arguments is None else arguments
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _text(content: Any) -> str:
    """Text content: a string, or OpenAI/ChatGPT parts (strings or {"type": "text"} objects)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(text for text in map(_text, content) if text)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


def _linear(messages: list, skipped: list[Note], where: Note, read_one) -> list[Message]:
    """A list of messages as one branch (each the parent of the next)."""
    out: list[Message] = []
    for i, raw in enumerate(messages):
        message = read_one(raw, str(i), out[-1].key if out else None)
        if message is None:
            skipped.append(Note("import_skip_message", where=where, number=i + 1))
        else:
            out.append(message)
    return out


def _openai_message(raw: Any, key: str, parent: str | None) -> Message | None:
    if not isinstance(raw, dict) or raw.get("role") not in ROLES - {"document"}:
        return None
    content, role = _text(raw.get("content")), raw["role"]
    tool = None
    if role == "assistant" and isinstance(raw.get("tool_calls"), list) and raw["tool_calls"]:
        tool = {"tool_calls": raw["tool_calls"]}
    elif role == "tool":
        tool = {"tool_call_id": raw.get("tool_call_id"), "name": raw.get("name")}
    if not content and tool is None:
        return None
    return Message(key, parent, role, content, model=raw.get("model"), tool=tool)


def _openai(item: dict, skipped: list[Note], where: Note) -> Conversation:
    messages = _linear(item["messages"], skipped, where, _openai_message)
    return Conversation(str(item.get("title") or _first_user(messages)), None, messages)


def _ours(item: dict, skipped: list[Note], where: Note) -> Conversation:
    """Our export; messages are ordered by their parent links, not by their place in the file."""
    nodes: dict[str, tuple[str | None, Message | None]] = {}
    for i, raw in enumerate(item["messages"]):
        key, parent = str(raw["id"]), raw.get("parent")
        parent = None if parent is None else str(parent)
        if raw.get("role") not in ROLES or not isinstance(raw.get("content"), str) or key in nodes:
            skipped.append(Note("import_skip_our_message", where=where, number=i + 1))
            continue
        extra = {k: raw[k] for k in EXTRA if isinstance(raw.get(k), (int, float)) and not isinstance(raw[k], bool)}
        nodes[key] = (parent, Message(key, parent, raw["role"], raw["content"], raw.get("created_at"),
                                      raw.get("status") or "complete", raw.get("model"), extra))
    messages = _tree(nodes)
    placed = {m.key for m in messages}
    skipped += [Note("import_skip_circle", where=where, message=key) for key in nodes if key not in placed]
    current = item.get("current")
    return Conversation(str(item.get("title") or ""), item.get("created_at"), messages,
                        None if current is None else str(current), str(item.get("source") or ""),
                        _own_settings(item.get("settings"), skipped, where), item.get("pinned") is True)


def _own_settings(raw: Any, skipped: list[Note], where: Note) -> dict:
    """A conversation's own settings as our export writes them; a value of the wrong kind or out of
    range is left out (the default applies) and said."""
    checks = {"system_prompt": lambda v: isinstance(v, str),
              "temperature": lambda v: type(v) in (int, float) and 0 <= v <= MAX_TEMPERATURE,
              "max_tokens": lambda v: type(v) is int and 1 <= v <= MAX_REPLY_TOKENS}
    raw = raw if isinstance(raw, dict) else {}
    kept = {name: raw[name] for name, ok in checks.items() if raw.get(name) is not None and ok(raw[name])}
    skipped += [Note("import_skip_setting", where=where, name=name, value=repr(raw[name]))
                for name in checks if raw.get(name) is not None and name not in kept]
    return kept


def _tree(nodes: dict[str, tuple[str | None, Message | None]]) -> list[Message]:
    """Messages of a tree given as key -> (parent key, message or None), parents first, in a time
    linear in its size; a node without a message (ChatGPT's root, hidden system nodes) passes its
    children to its parent. Messages in a cycle, or below one, are left out."""
    shown: dict[str | None, str | None] = {None: None}  # key -> the nearest ancestor with a message

    def visible(key: str | None) -> str | None:
        path: dict[str, None] = {}  # the hidden nodes passed, in order (a dict: a cycle is seen at once)
        while key not in shown and key in nodes and nodes[key][1] is None and key not in path:
            path[key] = None
            key = nodes[key][0]
        found = shown.get(key, key if key in nodes and nodes[key][1] is not None else None)
        for hidden in path:
            shown[hidden] = found
        return found

    ordered, placed, waiting = [], set(), {}
    for key, (parent, message) in nodes.items():
        if message is None:
            continue
        message.parent = visible(parent)
        if message.parent is not None and message.parent not in placed:
            waiting.setdefault(message.parent, []).append(message)
            continue
        ready = [message]
        while ready:  # a message placed lets the ones waiting for it in
            message = ready.pop()
            ordered.append(message)
            placed.add(message.key)
            ready += reversed(waiting.pop(message.key, []))
    return ordered


def _chatgpt(item: dict, skipped: list[Note], where: Note) -> Conversation:
    nodes: dict[str, tuple[str | None, Message | None]] = {}
    for key, node in item["mapping"].items():
        raw = node.get("message") or {}
        author = raw.get("author") or {}
        role, content = author.get("role"), raw.get("content") or {}
        kind = content.get("content_type")
        text = _text(content.get("parts")) if kind in ("text", "multimodal_text", None) else ""
        text = _text(content.get("text")) if kind in ("code", "execution_output") else text
        hidden = (raw.get("metadata") or {}).get("is_visually_hidden_from_conversation")
        tool = None
        if role == "assistant" and kind == "code" and raw.get("recipient") not in (None, "all"):  # a call
            tool, text = {"tool_calls": [{"id": key, "function": {"name": raw["recipient"], "arguments": text}}]}, ""
        elif role == "tool":  # a result: its parent is the call, if any
            tool = {"tool_call_id": node.get("parent"), "name": author.get("name")}
        if role in ("user", "assistant", "system", "tool") and (text or tool) and not hidden:
            nodes[key] = (node.get("parent"), Message(key, None, role, text, raw.get("create_time"),
                                                      model=(raw.get("metadata") or {}).get("model_slug"), tool=tool))
        else:
            if raw and role in ("user", "assistant") and not text:
                skipped.append(Note("import_skip_kind", where=where, kind=content.get("content_type", "non-text")))
            nodes[key] = (node.get("parent"), None)
    messages = _tree(nodes)
    current = item.get("current_node")
    return Conversation(str(item.get("title") or _first_user(messages)), item.get("create_time"), messages,
                        current if any(m.key == current for m in messages) else None,
                        f"chatgpt:{item['id']}" if item.get("id") else "")


def _open_webui(item: dict, skipped: list[Note], where: Note) -> Conversation:
    chat = item["chat"]
    history = chat.get("history") or {}
    if isinstance(history.get("messages"), dict) and history["messages"]:
        nodes = {}
        for key, raw in history["messages"].items():
            message = _openai_message(raw, key, None)
            if message is None:
                skipped.append(Note("import_skip_no_text", where=where))
            else:
                message.created_at, message.model = raw.get("timestamp"), raw.get("model")
            nodes[key] = (raw.get("parentId"), message)
        messages = _tree(nodes)
        current = history.get("currentId")
    else:
        messages, current = _linear(chat.get("messages") or [], skipped, where, _openai_message), None
    return Conversation(str(item.get("title") or chat.get("title") or _first_user(messages)), item.get("created_at"),
                        messages, current if any(m.key == current for m in messages) else None,
                        f"open-webui:{item['id']}" if item.get("id") else "")


def _first_user(messages: list[Message]) -> str:
    """The first user message's start as a title; empty (the faces word a default) without one."""
    text = next((m.content for m in messages if m.role == "user"), "")
    return " ".join(text.split())[:60]
