"""Conversations out to files and back in: export (our JSON format or Markdown) and import
(our format, OpenAI messages, ChatGPT, Open WebUI; see `history_formats`).

Export writes every branch, each message after its parent (docs/history-format.md). Import is all
or nothing (one transaction); a conversation already imported (same `source`) is not added again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.base.errors import UserError
from app.base.messages import Message
from app.history import COMPLETE, INTERRUPTED, QUEUED, STREAMING, TITLE_BY_USER, History
from app.services.history_formats import (EXTRA, FORMAT_NAME, FORMAT_VERSION, Conversation, read_conversations,
                                          too_deep)

OPTIONAL = ("model", *EXTRA)
MAX_IMPORT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class ImportResult:
    conversations: int
    messages: int
    skipped: int
    notes: tuple[Message, ...] = ()  # why things were skipped, one each, for the faces to word

    def as_dict(self) -> dict:
        return {"conversations": self.conversations, "messages": self.messages, "skipped": self.skipped}


# -- export ----------------------------------------------------------------------------------------
def _conversation_ids(history: History, ids: list[int] | None) -> list[int]:
    if not ids:
        return [c["id"] for c in history.conversations(limit=-1)][::-1]  # oldest first
    for conversation_id in ids:
        history.conversation(conversation_id)  # a missing one is named
    return ids


def _source(conversation: dict) -> str:
    """What identifies a conversation across exports and imports (made here: from its id and time)."""
    if conversation["source"]:
        return conversation["source"]
    made_here = f"{conversation['id']}:{conversation['created_at']}".encode()
    return "nemo-chat:" + hashlib.sha256(made_here).hexdigest()[:32]


def export_json(history: History, ids: list[int] | None = None) -> dict:
    """Our versioned format with every branch of the chosen (default: all) conversations, each
    message after its parent. The file holds the history as a restored copy will have it: a
    message still queued is an unanswered message at the end of the branch shown, and a reply
    being written is cut off where it is (interrupted)."""
    out = []
    for conversation_id in _conversation_ids(history, ids):
        conversation = history.conversation(conversation_id)
        rows, tip = history.all_messages(conversation_id), conversation["current_id"]
        for row in rows:
            if row["status"] == QUEUED:  # in the order sent, as `History.move_to_end` would place them
                row.update(parent_id=tip, status=COMPLETE)
                tip = row["id"]
            elif row["status"] == STREAMING:
                row["status"] = INTERRUPTED
        messages = []
        for row in _parents_first(rows):
            message = {"id": row["id"], "parent": row["parent_id"], "role": row["role"], "content": row["content"],
                       "created_at": row["created_at"], "status": row["status"]}
            message.update({k: row[k] for k in OPTIONAL if row.get(k) is not None})
            messages.append(message)
        own = {name: value for name, value in history.own_settings(conversation_id).items() if value is not None}
        out.append({"title": conversation["title"], "created_at": conversation["created_at"],
                    "source": _source(conversation), "current": tip, **({"settings": own} if own else {}),
                    **({"pinned": True} if conversation["pinned_at"] else {}), "messages": messages})
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "exported_at": time.time(), "conversations": out}


def _parents_first(rows: list[dict]) -> list[dict]:
    """Rows in the order they were written, except that each comes after its parent (a queued
    message gets its place, and its parent, once the reply before it was written)."""
    ordered, written, waiting = [], set(), {}
    for row in rows:
        if row["parent_id"] is not None and row["parent_id"] not in written:
            waiting.setdefault(row["parent_id"], []).append(row)
            continue
        ready = [row]
        while ready:
            placed = ready.pop()
            ordered.append(placed)
            written.add(placed["id"])
            ready.extend(reversed(waiting.pop(placed["id"], [])))
    return ordered + [row for left in waiting.values() for row in left]  # parents missing: kept, last


def export_markdown(history: History, ids: list[int] | None = None, say: Callable[[Message], str] = str) -> str:
    """The branch shown of each conversation, readable as is; `say` words its headings (the roles,
    a default title, an attached document) in the face's language (str: English)."""
    parts = []
    for conversation_id in _conversation_ids(history, ids):
        parts.append(f"# {history.conversation(conversation_id)['title'] or say(Message('chat_untitled'))}\n")
        for row in history.messages(conversation_id):
            parts.append(f"## {say(_heading(row))}\n\n{_body(row, say)}\n")
    return "\n".join(parts)


ROLE_KEYS = {role: f"export_role_{role}" for role in ("user", "assistant", "tool", "document", "system")}
STATUS_KEYS = {status: f"export_status_{status}" for status in ("stopped", "interrupted", "error", "streaming")}


def _heading(row: dict) -> Message:
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"] or 0))
    role_key, status_key = ROLE_KEYS.get(row["role"]), STATUS_KEYS.get(row["status"])
    role = Message(role_key) if role_key else row["role"]
    if row["status"] in ("complete", QUEUED):
        return Message("export_heading", role=role, stamp=stamp)
    return Message("export_heading_status", role=role, stamp=stamp,
                   status=Message(status_key) if status_key else row["status"])


def _body(row: dict, say: Callable[[Message], str] = str) -> str:
    if row["role"] == "document":
        record = json.loads(row["content"])
        return say(Message("export_attached", title=record.get("title", ""), note=record.get("note", "")))
    if row["role"] == "tool":
        record = json.loads(row["content"])
        arguments = json.dumps(record.get("arguments"), ensure_ascii=False)
        outcome = record.get("error") or json.dumps(record.get("result"), ensure_ascii=False)
        return f"`{record.get('name')}({arguments})`\n\n```json\n{outcome}\n```"
    return row["content"]


# -- import ----------------------------------------------------------------------------------------
def read_file(path: Path) -> dict | list:
    name = path.name
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise UserError("import_too_big", name=name, mb=MAX_IMPORT_BYTES // 2**20)
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UserError("doc_not_found", name=name) from None
    except UnicodeDecodeError:
        raise UserError("import_not_utf8", name=name) from None
    except json.JSONDecodeError as exc:
        raise UserError("import_bad_json", name=name, error=exc.msg, line=exc.lineno, column=exc.colno) from None
    except RecursionError:  # nested far deeper than any cap: the parser itself gives up
        raise too_deep(name) from None
    except OSError as exc:
        raise UserError("doc_cannot_read", name=name, reason=exc.strerror) from None


def import_files(history: History, paths: list[Path]) -> ImportResult:
    """Import every file in one transaction: a malformed file imports nothing at all."""
    parsed = [(path.name, read_conversations(read_file(path), path.name)) for path in paths]
    conversations = messages = skipped = 0
    notes: list[Message] = []
    with history.database.transaction() as conn:
        known = {_source(dict(zip(("id", "created_at", "source"), row)))
                 for row in conn.execute("SELECT id, created_at, source FROM conversations")}
        for name, found in parsed:
            notes += [Message("in_file", name=name, said=note) for note in found.skipped]
            skipped += len(found.skipped)
            for conversation in found.conversations:
                if conversation.source in known:
                    continue  # imported (or exported from here) before
                known.add(conversation.source)
                messages += _insert(history, conversation)
                conversations += 1
    return ImportResult(conversations, messages, skipped, tuple(notes))


def _insert(history: History, conversation: Conversation) -> int:
    """One conversation with its branches; the number of messages written."""
    conversation_id = history.create_conversation(" ".join(conversation.title.split())[:200], TITLE_BY_USER)
    conn = history.database.conn
    ids: dict[str, int] = {}
    for message in conversation.messages:
        created = float(message.created_at or conversation.created_at or time.time())
        row = {"conversation_id": conversation_id, "role": message.role, "content": message.content,
               "status": message.status if message.status != QUEUED else "complete", "model": message.model,
               "parent_id": ids.get(message.parent) if message.parent else None,
               "created_at": created, "updated_at": created, **message.extra}
        columns = ", ".join(row)
        ids[message.key] = conn.execute(f"INSERT INTO messages ({columns}) VALUES ({', '.join('?' * len(row))})",
                                        list(row.values())).lastrowid
    current = ids.get(conversation.current) if conversation.current else None
    created = float(conversation.created_at or time.time())
    latest = max([created, *(float(m.created_at or 0) for m in conversation.messages)])
    conn.execute("UPDATE conversations SET current_id = ?, source = ?, created_at = ?, updated_at = ?, pinned_at = ?"
                 " WHERE id = ?", [current or max(ids.values()), conversation.source, created, latest,
                                   latest if conversation.pinned else None, conversation_id])
    history.set_own_settings(conversation_id, **conversation.settings)
    return len(ids)
