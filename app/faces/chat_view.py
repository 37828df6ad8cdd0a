"""What the Chat tab shows, made from saved rows and the reply being written: no Gradio here.

Bubbles come in the conversation's order; a reply that was stopped, cut off or failed carries a
mark in its own bubble (its status is in SQLite, so the mark comes back on reopening); the reply
being written shows its text so far, or why it has none yet (waiting for the model, reading the
prompt); messages sent while it runs follow it, each saying how many replies come first.
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

from app.base.errors import UserError
from app.base.jobs import WAITING, Job, Progress
from app.engine.catalog import available_models, resolve_model
from app.faces.web_guard import remote_images_as_links
from app.history import FAILED, INTERRUPTED, QUEUED, STOPPED
from app.services.chat import ReplyUpdate
from app.services.chat_queue import TabReplies
from app.services.root import Services

MARKS = {STOPPED: "■ stopped", INTERRUPTED: "■ cut off: the app was closed while it was written",
         FAILED: "■ failed"}  # plain symbols: they show with every font


def waiting_text(progress: Progress | None) -> str:
    """Why a reply has no text yet."""
    if progress is not None and progress.what == WAITING:
        return f"*waiting for the model ({progress.ahead} ahead)…*"
    if progress is not None and progress.total:
        return f"*reading the prompt: {progress.done:,} of {progress.total:,} tokens…*"
    return "…"


def saved_bubble(row: dict) -> dict:
    """One saved row as a Chatbot message; images from other servers become links."""
    if row["role"] == "document":
        attached = json.loads(row["content"])
        message = {"role": "user", "content": attached["note"],
                   "metadata": {"title": f"Attached: {attached['title']}", "status": "done"}}
    elif row["role"] != "tool":
        message = {"role": row["role"], "content": row["content"]}
    else:
        step = json.loads(row["content"])
        arguments = json.dumps(step["arguments"], ensure_ascii=False)
        outcome = f"Error: {step['error']}" if step["error"] else f"```json\n{step['content']}\n```"
        message = {"role": "assistant", "content": outcome,
                   "metadata": {"title": f"Tool: {step['name']}({arguments})", "status": "done"}}
    message["content"] = remote_images_as_links(message["content"])
    if "metadata" in message:
        message["metadata"]["title"] = remote_images_as_links(message["metadata"]["title"])
    if row["role"] == "assistant" and row["status"] in MARKS:
        message["content"] += f"\n\n*{MARKS[row['status']]}*"
    return message


def bubbles(rows: list[dict], live: ReplyUpdate | None = None,
            progress: Progress | None = None) -> tuple[list[dict], list[int | None]]:
    """Chatbot messages and their row ids (None for the notes that are no row) for a conversation's
    rows; `live` is the reply being written in it, `progress` its job's progress."""
    queued = [r for r in rows if r["role"] == "user" and r["status"] == QUEUED]
    shown, ids = [], []
    for row in rows:
        if row["status"] == QUEUED:
            continue
        if live is not None and row["id"] == live.message_id:
            row = {**row, "content": live.text, "status": live.status}
        if row["role"] == "assistant" and not row["content"].strip():
            continue  # a reply stopped before its first word (older versions kept an empty row)
        shown.append(saved_bubble(row))
        ids.append(row["id"])
    if live is not None and live.message_id is None and (live.text or not live.done):
        shown.append({"role": "assistant", "content": remote_images_as_links(live.text) or waiting_text(progress)})
        ids.append(None)
    for ahead, row in enumerate(queued, 1):  # each waits for the reply being written, then the ones before it
        shown.append(saved_bubble(row))
        ids.append(row["id"])
        shown.append({"role": "assistant", "content": waiting_text(Progress(0, 0, WAITING, ahead=ahead))})
        ids.append(None)
    return shown, ids


class ChatUI:
    """What the Chat tab shows, made from the services that all browser tabs share; `viewing`
    holds the conversation each browser tab (session) has open."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.replies = TabReplies(services.chat, services.jobs)
        self.viewing: dict[str, int | None] = {}

    @property
    def history(self):
        return self.services.history

    @property
    def settings(self):
        return self.services.settings

    def model_notice(self) -> str:
        if self.settings.remote.strip():  # a server holds the model
            return (f"Model: **{self.settings.remote_model or 'the first the server lists'}** on {self.settings.remote}"
                    f" · context {self.settings.n_ctx:,} tokens")
        try:
            path = resolve_model(self.settings.model)
        except UserError as exc:
            return f"⚠️ {exc}"
        return f"Model: **{path.name}** · context {self.settings.n_ctx:,} tokens"

    def model_choice(self) -> str | None:
        """The Settings model field: the model the settings name, or the one used when they name none."""
        return self.settings.model or next(iter(available_models()), None)

    def conversation_choices(self, query: str = "") -> list[tuple[str, int]]:
        if query.strip():
            seen: dict[int, str] = {}
            for hit in self.history.search(query):
                seen.setdefault(hit.conversation_id, hit.conversation_title)
            return [(title, cid) for cid, title in seen.items()]
        return [(c["title"], c["id"]) for c in self.history.conversations()]

    def title(self, conversation_id: int | None) -> str:
        return "" if conversation_id is None else self.history.conversation(conversation_id)["title"]

    def chat_messages(self, conversation_id: int | None, live: ReplyUpdate | None = None,
                      progress: Progress | None = None) -> tuple[list[dict], list[int | None]]:
        """Chatbot messages and their row ids; tool steps show as collapsible boxes."""
        if conversation_id is None:
            return [], []
        if live is not None and live.conversation_id != conversation_id:
            live = None
        return bubbles(self.history.messages(conversation_id), live, progress)

    def meter(self, conversation_id: int | None, stats=None) -> str:
        """Token meter (conversation tokens / context) and the last reply's speed; nothing for a
        reply that wrote no token."""
        if conversation_id is None:
            return ""
        if stats is None:
            replies = [m for m in self.history.messages(conversation_id) if m["role"] == "assistant"]
            if not replies or not replies[-1]["completion_tokens"]:
                return ""
            stats = replies[-1]
            used = (stats["prompt_tokens"] or 0) + (stats["completion_tokens"] or 0)
            speed, ttft = stats["tokens_per_s"] or 0, stats["ttft_s"] or 0
        elif not stats.completion_tokens:
            return ""
        else:
            used = stats.prompt_tokens + stats.completion_tokens
            speed, ttft = stats.tokens_per_s, stats.ttft_s
        return f"{used:,} / {self.settings.n_ctx:,} tokens · {speed:.1f} tok/s · first token {ttft:.2f} s"

    def follow(self, job: Job, showing: int | Callable[[], int | None] | None = None) -> Iterator[tuple]:
        """(chatbot, ids, conversation, status line) tuples while a reply job runs, for the
        conversation `showing` names (an id, or a function giving the one the tab has open now;
        None: the reply's own); a UserError of the job is raised at the end. The job is stopped
        if the page goes away."""
        try:
            for _ in job.watch():
                update = job.latest
                if update is None:
                    continue
                shown = showing() if callable(showing) else showing or update.conversation_id
                if shown is None:
                    continue
                messages, ids = self.chat_messages(shown, update, job.progress)
                yield messages, ids, shown, self.status_line(update, job.progress)
            job.result()
        finally:
            job.stop()

    def status_line(self, update: ReplyUpdate, progress: Progress | None) -> str:
        """The line under the chat: what the reply is doing, then its meter once done."""
        if not update.done:
            return waiting_text(progress) if update.message_id is None and not update.text else "…"
        meter = self.meter(update.conversation_id, update.stats)
        if update.status == STOPPED:
            return "stopped · " + meter if meter else "stopped before the first word"
        return meter

