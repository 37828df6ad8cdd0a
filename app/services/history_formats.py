"""Reading conversation files made elsewhere: our own export, OpenAI-style messages, ChatGPT's
`conversations.json` and Open WebUI's chat export, into one neutral shape (a tree per conversation).

Pure functions over parsed JSON; nothing here touches the database. A file that is not one of
these formats is refused with a `UserError` naming what is wrong; a conversation or message that
cannot be used is skipped and counted, with the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from app.base.errors import UserError

FORMAT_NAME, FORMAT_VERSION = "nemo-chat", 1
ROLES = {"user", "assistant", "system", "tool", "document"}
EXTRA = ("prompt_tokens", "cached_tokens", "completion_tokens", "tokens_per_s", "ttft_s")


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


@dataclass
class Conversation:
    title: str
    created_at: float | None
    messages: list[Message]  # parents before children
    current: str | None = None  # the last message of the branch shown; None: the last one
    source: str = ""  # what identifies it in its file, so a second import adds nothing twice


@dataclass
class Parsed:
    conversations: list[Conversation] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one reason per thing left out


def read_conversations(data: Any, name: str) -> Parsed:
    """The conversations in a parsed JSON file; `name` is the file's name for messages."""
    if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
        if data.get("version") != FORMAT_VERSION:
            raise UserError(f"{name}: nemo-chat export version {data.get('version')!r} is not supported "
                            f"(this app reads version {FORMAT_VERSION})")
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
    raise UserError(f"{name}: not a conversation file this app knows (nemo-chat export, OpenAI messages, "
                    "ChatGPT conversations.json or Open WebUI chat export)")


def _each(items: Any, name: str, read) -> Parsed:
    if not isinstance(items, list):
        raise UserError(f'{name}: "conversations" must be a list')
    parsed = Parsed()
    for i, item in enumerate(items):
        try:
            conversation = read(item, parsed.skipped, f"conversation {i + 1}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            parsed.skipped.append(f"conversation {i + 1}: unreadable ({type(exc).__name__}: {exc})")
            continue
        if not conversation.messages:
            parsed.skipped.append(f"conversation {i + 1} ({conversation.title}): no messages")
            continue
        conversation.source = conversation.source or _fingerprint(conversation)
        parsed.conversations.append(conversation)
    return parsed


def _fingerprint(conversation: Conversation) -> str:
    """A stable identity for a conversation without ids of its own: its title and messages."""
    body = json.dumps([conversation.title, [(m.role, m.content) for m in conversation.messages]], ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def _text(content: Any) -> str:
    """Text content: a string, or OpenAI/ChatGPT parts (strings or {"type": "text"} objects)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(_text(part) for part in content if _text(part))
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


def _linear(messages: list, skipped: list[str], where: str, read_one) -> list[Message]:
    """A list of messages as one branch (each the parent of the next)."""
    out: list[Message] = []
    for i, raw in enumerate(messages):
        message = read_one(raw, str(i), out[-1].key if out else None)
        if message is None:
            skipped.append(f"{where}, message {i + 1}: no text or an unknown role")
        else:
            out.append(message)
    return out


def _openai_message(raw: Any, key: str, parent: str | None) -> Message | None:
    if not isinstance(raw, dict) or raw.get("role") not in ROLES - {"document"}:
        return None
    content = _text(raw.get("content"))
    if raw.get("tool_calls"):
        content = json.dumps({"tool_calls": raw["tool_calls"]}, ensure_ascii=False)
    if not content:
        return None
    return Message(key, parent, raw["role"], content, model=raw.get("model"))


def _openai(item: dict, skipped: list[str], where: str) -> Conversation:
    messages = _linear(item["messages"], skipped, where, _openai_message)
    return Conversation(str(item.get("title") or _first_user(messages)), None, messages)


def _ours(item: dict, skipped: list[str], where: str) -> Conversation:
    messages, known = [], set()
    for i, raw in enumerate(item["messages"]):
        key, parent = str(raw["id"]), raw.get("parent")
        parent = None if parent is None else str(parent)
        if raw.get("role") not in ROLES or not isinstance(raw.get("content"), str) or (parent and parent not in known):
            skipped.append(f"{where}, message {i + 1}: an unknown role, no text, or a parent that comes later")
            continue
        known.add(key)
        extra = {k: raw[k] for k in EXTRA if isinstance(raw.get(k), (int, float)) and not isinstance(raw[k], bool)}
        messages.append(Message(key, parent, raw["role"], raw["content"], raw.get("created_at"),
                                raw.get("status") or "complete", raw.get("model"), extra))
    current = item.get("current")
    return Conversation(str(item.get("title") or "Imported chat"), item.get("created_at"), messages,
                        None if current is None else str(current), str(item.get("source") or ""))


def _tree(nodes: dict[str, tuple[str | None, Message | None]]) -> list[Message]:
    """Messages of a tree given as key -> (parent key, message or None), parents first; a node
    without a message (ChatGPT's root, hidden system nodes) passes its children to its parent."""
    def visible_parent(key: str | None) -> str | None:
        seen = set()
        while key is not None and key in nodes and nodes[key][1] is None and key not in seen:
            seen.add(key)
            key = nodes[key][0]
        return key if key in nodes else None

    ordered, placed = [], set()
    pending = [k for k, (_, m) in nodes.items() if m is not None]
    while pending:
        progressed = False
        for key in list(pending):
            parent = visible_parent(nodes[key][0])
            if parent is None or parent in placed:
                message = nodes[key][1]
                message.parent = parent
                ordered.append(message)
                placed.add(key)
                pending.remove(key)
                progressed = True
        if not progressed:  # a cycle: what is left cannot be ordered
            break
    return ordered


def _chatgpt(item: dict, skipped: list[str], where: str) -> Conversation:
    nodes: dict[str, tuple[str | None, Message | None]] = {}
    for key, node in item["mapping"].items():
        raw = node.get("message") or {}
        role = (raw.get("author") or {}).get("role")
        content = raw.get("content") or {}
        text = _text(content.get("parts")) if content.get("content_type") in ("text", "multimodal_text", None) else ""
        hidden = (raw.get("metadata") or {}).get("is_visually_hidden_from_conversation")
        if role in ("user", "assistant", "system", "tool") and text and not hidden:
            nodes[key] = (node.get("parent"), Message(key, None, role, text, raw.get("create_time"),
                                                      model=(raw.get("metadata") or {}).get("model_slug")))
        else:
            if raw and role in ("user", "assistant") and not text:
                skipped.append(f"{where}: a {content.get('content_type', 'non-text')} message")
            nodes[key] = (node.get("parent"), None)
    messages = _tree(nodes)
    current = item.get("current_node")
    return Conversation(str(item.get("title") or _first_user(messages)), item.get("create_time"), messages,
                        current if any(m.key == current for m in messages) else None,
                        f"chatgpt:{item['id']}" if item.get("id") else "")


def _open_webui(item: dict, skipped: list[str], where: str) -> Conversation:
    chat = item["chat"]
    history = chat.get("history") or {}
    if isinstance(history.get("messages"), dict) and history["messages"]:
        nodes = {}
        for key, raw in history["messages"].items():
            message = _openai_message(raw, key, None)
            if message is None:
                skipped.append(f"{where}: a message with no text")
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
    text = next((m.content for m in messages if m.role == "user"), "Imported chat")
    return " ".join(text.split())[:60] or "Imported chat"
