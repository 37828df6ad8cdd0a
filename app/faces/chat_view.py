"""What the Chat tab shows, made from saved rows and the reply being written: no components here,
only text, written in the page's language (`language`, a code of `i18n.LANGUAGES`).

Bubbles come in the conversation's order; a reply that was stopped, cut off or failed carries a
mark in its own bubble (its status is in SQLite, so the mark comes back on reopening); the reply
being written shows its text so far, or why it has none yet (waiting for the model, reading the
prompt); messages sent while it runs follow it, each saying how many replies come first, with a
✕ that takes it back. A conversation that ends in a message nobody answers (stopped before the
first word, or left when its tab closed) ends in a note whose ↻ (the Chatbot's Retry) answers it.
"""

from __future__ import annotations

import html
import json
from typing import Callable, Iterator

from app.base.errors import UserError
from app.base.jobs import WAITING, Job, Progress
from app.base.messages import Message
from app.engine.catalog import available_models, resolve_model
from app.faces.chat_window import ChatWindows
from app.faces.i18n import text, words
from app.faces.web_guard import remote_images_as_links
from app.history import FAILED, INTERRUPTED, QUEUED, STOPPED
from app.nemo.tools import ALLOW_ALWAYS, ALLOW_ONCE, DENY, Approval
from app.services.chat import ReplyUpdate
from app.services.chat_queue import TabReplies
from app.services.root import Services

SIDEBAR_PAGE = 50  # conversations listed at first, and added by each "More"
MARKS = {STOPPED: "chat_mark_stopped", INTERRUPTED: "chat_mark_interrupted",
         FAILED: "chat_mark_failed"}  # locale keys; plain symbols (■) that show with every font


def waiting_text(progress: Progress | None, language: str = "en") -> str:
    """Why a reply has no text yet."""
    if progress is not None and progress.what == WAITING:
        return text(language, "chat_waiting", ahead=progress.ahead)
    if progress is not None and progress.total:
        return text(language, "chat_reading_prompt", done=f"{progress.done:,}", total=f"{progress.total:,}")
    return "…"


def saved_bubble(row: dict, language: str = "en") -> dict:
    """One saved row as a Chatbot message; images from other servers become links."""
    if row["role"] == "document":
        attached = json.loads(row["content"])
        note = Message.from_json(attached["note_said"]) if "note_said" in attached else attached["note"]  # older rows: English
        message = {"role": "user", "content": words(language, note),
                   "metadata": {"title": text(language, "chat_attached", title=attached["title"]), "status": "done"}}
    elif row["role"] != "tool":
        message = {"role": row["role"], "content": row["content"]}
    else:
        step = json.loads(row["content"])
        call = f"{step['name']}({json.dumps(step['arguments'], ensure_ascii=False)})"
        if step.get("denied"):
            outcome = text(language, "chat_tool_denied")
        elif step["error"]:
            outcome = text(language, "chat_tool_error", error=step["error"])
        else:
            outcome = f"```json\n{step['content']}\n```"
        message = {"role": "assistant", "content": outcome,
                   "metadata": {"title": text(language, "chat_tool_step", call=call), "status": "done"}}
    message["content"] = remote_images_as_links(message["content"])
    if "metadata" in message:
        message["metadata"]["title"] = remote_images_as_links(message["metadata"]["title"])
    if row["role"] == "assistant" and row["status"] in MARKS:
        message["content"] += f"\n\n*{text(language, MARKS[row['status']])}*"
    return message


APPROVAL_CHOICES = [(ALLOW_ONCE, "chat_tool_allow_once"), (ALLOW_ALWAYS, "chat_tool_allow_always"),
                    (DENY, "chat_tool_deny")]  # (answer, locale key)


def approval_bubble(approval: Approval, language: str = "en") -> dict:
    """The question a call that changes things asks before it runs, with its three answers."""
    arguments = json.dumps(approval.call.arguments, ensure_ascii=False, indent=1)
    question = text(language, "chat_tool_approval", tool=approval.call.name, server=approval.tool.server)
    message = {"role": "assistant", "content": remote_images_as_links(f"{question}\n\n```json\n{arguments}\n```"),
               "options": [{"value": answer, "label": text(language, key)} for answer, key in APPROVAL_CHOICES]}
    return message


def fold_bubble(fold: dict, language: str = "en") -> dict:
    """'Earlier messages summarized (N messages)', closed; opened, the running summary."""
    bubble = {"role": "assistant", "content": remote_images_as_links(fold["text"]),
              "metadata": {"title": text(language, "chat_fold", count=fold["messages"]), "status": "done"}}
    return bubble


def bubbles(rows: list[dict], live: ReplyUpdate | None = None, progress: Progress | None = None,
            language: str = "en", fold: dict | None = None,
            answering: bool = False) -> tuple[list[dict], list[int | None]]:
    """Chatbot messages and their row ids (None for the notes that are no row) for a conversation's
    rows; `live` is the reply being written in it, `progress` its job's progress, `fold` the running
    summary of its oldest messages (shown after the last message it covers). `answering`: a reply to
    the last message was just asked for, so it gets no "no reply yet" note."""
    queued = [r for r in rows if r["role"] == "user" and r["status"] == QUEUED]
    shown, ids = [], []
    for row in rows:
        if row["status"] == QUEUED:
            continue
        if live is not None and row["id"] == live.message_id:
            row = {**row, "content": live.text, "status": live.status}
        if row["role"] == "assistant" and not row["content"].strip():
            continue  # a reply stopped before its first word (older versions kept an empty row)
        shown.append(saved_bubble(row, language))
        ids.append(row["id"])
        if fold is not None and row["id"] == fold["last_message_id"]:
            shown.append(fold_bubble(fold, language))
            ids.append(None)
    asking = live is not None and live.approval is not None and live.approval.answer is None
    if live is not None and live.message_id is None and (live.text or not (live.done or asking)):
        text_so_far = remote_images_as_links(live.text) or waiting_text(progress, language)
        shown.append({"role": "assistant", "content": text_so_far})
        ids.append(None)
    elif not (asking or answering or queued) and ids and rows[-1]["role"] == "user" and ids[-1] == rows[-1]["id"]:
        shown.append({"role": "assistant", "content": text(language, "chat_unanswered")})  # its ↻ answers it
        ids.append(None)
    if asking:
        shown.append(approval_bubble(live.approval, language))
        ids.append(None)
    for ahead, row in enumerate(queued, 1):  # each waits for the reply being written, then the ones before it
        shown.append(saved_bubble(row, language))
        ids.append(row["id"])
        shown.append({"role": "assistant", "content": waiting_text(Progress(0, 0, WAITING, ahead=ahead), language)
                      + take_back_button(row["id"], language)})
        ids.append(None)
    return shown, ids


def take_back_button(message_id: int, language: str = "en") -> str:
    """The ✕ of a queued message (the page script of `ui_history` sends its value to the server)."""
    label = html.escape(text(language, "chat_take_back"))
    return f' <button type="button" class="take-back" value="takeback:{message_id}" title="{label}">✕ {label}</button>'


def titled(title: str, language: str = "en") -> str:
    """A conversation's title, or the page's words for one that has none (a new chat's, stored empty)."""
    return title or text(language, "chat_untitled")


class ChatUI:
    """What the Chat tab shows, made from the services that all browser tabs share; `viewing`
    holds the conversation each browser tab (session) has open, `listed` how many conversations
    its sidebar lists once "More" was pressed."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.replies = TabReplies(services.chat, services.jobs)
        self.viewing: dict[str, int | None] = {}
        self.listed: dict[str, int] = {}
        self.windows = ChatWindows()  # long conversations show their latest bubbles

    @property
    def history(self):
        return self.services.history

    @property
    def settings(self):
        return self.services.settings

    def model_notice(self, language: str = "en") -> str:
        n_ctx = f"{self.settings.n_ctx:,}"
        if self.settings.remote.strip():  # a server holds the model
            name = self.settings.remote_model or text(language, "chat_server_first_model")
            return text(language, "chat_model_line_remote", name=name, url=self.settings.remote, n_ctx=n_ctx)
        try:
            path = resolve_model(self.settings.model)
        except UserError as exc:
            return text(language, "common_warning", message=exc)
        return text(language, "chat_model_line", name=path.name, n_ctx=n_ctx)

    def model_choice(self) -> str | None:
        """The Settings model field: the model the settings name, or the one used when they name none."""
        return self.settings.model or next(iter(available_models()), None)

    def conversation_choices(self, query: str = "", limit: int = SIDEBAR_PAGE,
                             language: str = "en") -> list[tuple[str, int]]:
        """The sidebar's list: the pinned conversations (marked 📌), then the newest, `limit` in all;
        or those where `query` is found (a conversation without a title named in `language`)."""
        if query.strip():
            seen: dict[int, str] = {}
            for hit in self.history.search(query):
                seen.setdefault(hit.conversation_id, titled(hit.conversation_title, language))
            return [(title, cid) for cid, title in seen.items()]
        return [(("📌 " if c["pinned_at"] else "") + titled(c["title"], language), c["id"])
                for c in self.history.conversations(limit, pinned_first=True)]

    def title(self, conversation_id: int | None, language: str = "en") -> str:
        return "" if conversation_id is None else titled(self.history.conversation(conversation_id)["title"], language)

    def chat_messages(self, conversation_id: int | None, live: ReplyUpdate | None = None,
                      progress: Progress | None = None, language: str = "en",
                      answering: bool = False) -> tuple[list[dict], list[int | None]]:
        """Chatbot messages and their row ids; tool steps show as collapsible boxes (`answering`: see
        `bubbles`)."""
        if conversation_id is None:
            return [], []
        if live is not None and live.conversation_id != conversation_id:
            live = None
        rows = self.history.messages(conversation_id)
        fold = self.services.chat.summaries.covering(conversation_id, [r["id"] for r in rows if r["status"] != QUEUED])
        return self.windows.cut(conversation_id, *bubbles(rows, live, progress, language, fold, answering), language)

    def meter(self, conversation_id: int | None, stats=None, language: str = "en") -> str:
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
        return text(language, "chat_meter", used=f"{used:,}", n_ctx=f"{self.settings.n_ctx:,}", speed=f"{speed:.1f}",
                    ttft=f"{ttft:.2f}")

    def follow(self, job: Job, showing: int | Callable[[], int | None] | None = None,
               language: str = "en") -> Iterator[tuple]:
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
                messages, ids = self.chat_messages(shown, update, job.progress, language)
                yield messages, ids, shown, self.status_line(update, job.progress, language)
            job.result()
        finally:
            job.stop()

    def status_line(self, update: ReplyUpdate, progress: Progress | None, language: str = "en") -> str:
        """The line under the chat: what the reply is doing, then its meter once done."""
        if not update.done:
            return waiting_text(progress, language) if update.message_id is None and not update.text else "…"
        meter = self.meter(update.conversation_id, update.stats, language)
        if update.status == STOPPED:
            return text(language, "chat_reply_stopped", meter=meter) if meter else text(language, "chat_stopped_early")
        return meter

