"""Conversations with the model: send, retry, edit; replies stream into SQLite as they grow.

The UI and the CLI both drive chat through this module; it never imports gradio.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Iterator

from app.engine.chat_format import NemoChatFormat, chat_format_for, token_counter
from app.base.config import Settings
from app.base.errors import UserError
from app.base.messages import Message
from app.base.logs import log_exception
from app.engine.gpu_plan import planned_options
from app.history import (COMPLETE, FAILED, QUEUED, STOPPED, STREAMING, TITLE_BY_DOCUMENT, TITLE_BY_MESSAGE,
                         TITLE_BY_MODEL, History)
from app.base.jobs import CancelToken, ProgressCallback, no_progress
from app.engine.catalog import resolve_model
from app.runtime import Completion, Engine, GenerationStats, LoadOptions, SamplingOptions
from app.services.conversation_fold import Turn, fitted_prompt
from app.storage.conversation_summaries import ConversationSummaries
from app.storage.document_store import DocumentStore
from app.nemo.prompt import NAME_RE
from app.nemo.tools import (Approval, ConversationSearch, SearchHit, TextDelta, Tool, ToolStep, as_prompt_call,
                            builtin_tools, run_tool_loop)
from app.services.toolbox import ToolBox

SAVE_EVERY_S = 0.5  # a streaming reply reaches the database at least this often
CONTEXT_STATUSES = {COMPLETE, STOPPED, "interrupted"}  # failed replies are not sent back


@dataclass(frozen=True)
class ReplyUpdate:
    """The reply so far; `done` on the last update, which carries the stats. `message_id` is
    None until the reply's first text (tool steps, saved as their own rows, may come first)."""

    conversation_id: int
    message_id: int | None
    text: str
    done: bool = False
    status: str = STREAMING
    stats: GenerationStats | None = None
    approval: Approval | None = None  # a tool call waiting for the person's answer


def load_options(settings: Settings) -> LoadOptions:
    if settings.remote.strip():  # a server holds the model: its served name and the context apply
        return LoadOptions(model_path=settings.remote_model.strip(), n_ctx=settings.n_ctx)
    options = LoadOptions(
        model_path=str(resolve_model(settings.model)),
        n_ctx=settings.n_ctx,
        n_gpu_layers=settings.n_gpu_layers,
        n_threads=settings.n_threads,
        kv_type=settings.kv_type,
        parallel=settings.parallel,
    )
    return planned_options(options) if settings.gpu == "auto" else options


def sampling_options(settings: Settings) -> SamplingOptions:
    return SamplingOptions(
        temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens
    )


def title_from(text: str) -> str:
    """The start of `text` as a title; empty (the faces word a default) when it has no words."""
    words = " ".join(text.split())
    return (words[:57] + "…") if len(words) > 60 else words


class ChatService:
    """Send (or post now and answer later), retry, edit and attach documents; replies stream
    into the history as they grow."""

    def __init__(self, history: History, engine: Engine, documents: DocumentStore | None = None,
                 toolbox: ToolBox | None = None) -> None:
        self.history = history
        self.engine = engine
        self.documents = documents or DocumentStore(history)
        self.toolbox = toolbox  # MCP tools and approvals; None: the built-ins only
        self.summaries = ConversationSummaries(history)

    def ensure_model(self, settings: Settings) -> None:
        self.engine.load(load_options(settings))

    def send(self, conversation_id: int | None, text: str, settings: Settings,
             cancel: CancelToken | None = None, progress: ProgressCallback = no_progress) -> Iterator[ReplyUpdate]:
        """Add the user's message (to a new conversation when id is None) and stream a reply."""
        self.ensure_model(settings)  # before anything is written: a bad model stores nothing
        conversation_id, _ = self.post(conversation_id, text, settings, queued=False)
        return self._reply(conversation_id, settings, cancel or CancelToken(), progress)

    def post(self, conversation_id: int | None, text: str, settings: Settings, queued: bool = True) -> tuple[int, int]:
        """Store the user's message (in a new conversation when id is None), waiting for `answer`
        when `queued`; returns the conversation and message ids. A model that cannot be found
        stores nothing."""
        if not text.strip():
            raise UserError("chat_message_is_empty")
        load_options(settings)  # the model exists (loading it waits for the model's turn: `answer` does)
        if conversation_id is None:
            conversation_id = self.history.create_conversation(title_from(text))
        return conversation_id, self.history.add_message(conversation_id, "user", text, QUEUED if queued else COMPLETE)

    def answer(self, message_id: int, settings: Settings, cancel: CancelToken | None = None,
               progress: ProgressCallback = no_progress) -> Iterator[ReplyUpdate]:
        """Answer a posted message: it takes the conversation's last place (replies written while
        it waited come before it), then the reply streams. A cancelled token leaves it unanswered."""
        cancel = cancel or CancelToken()
        conversation_id = self.history.message(self.history.move_to_end(message_id))["conversation_id"]
        if cancel.cancelled:
            return iter(())
        self.ensure_model(settings)
        return self._reply(conversation_id, settings, cancel, progress)

    def release(self, message_id: int) -> None:
        """A posted message that will not be answered now stays as a plain message, in last place."""
        try:
            self.history.move_to_end(message_id)
        except UserError:
            return  # deleted with its conversation meanwhile: nothing is left to keep

    def retry(self, conversation_id: int, settings: Settings,
              cancel: CancelToken | None = None) -> Iterator[ReplyUpdate]:
        """Answer the last user message again; the earlier reply is kept as another version."""
        self.ensure_model(settings)
        messages = [m for m in self.history.messages(conversation_id) if m["status"] != QUEUED]
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last_user is None:
            raise UserError("chat_nothing_to_retry")
        if last_user + 1 < len(messages):
            self.history.branch_before(messages[last_user + 1]["id"])
        return self._reply(conversation_id, settings, cancel or CancelToken())

    def edit(self, conversation_id: int, message_id: int, text: str, settings: Settings,
             cancel: CancelToken | None = None) -> Iterator[ReplyUpdate]:
        """A new version of a user message, answered again; the earlier version and what followed
        it are kept (the chat shows ‹ 1/2 › to switch)."""
        if not text.strip():
            raise UserError("chat_message_is_empty")
        message = self.history.message(message_id)
        if message["conversation_id"] != conversation_id or message["role"] != "user":
            raise UserError("chat_edit_own_only")
        if message["status"] == QUEUED:
            raise UserError("chat_edit_queued")
        self.ensure_model(settings)
        first = next(m for m in self.history.messages(conversation_id) if m["role"] in ("user", "document"))
        self.history.branch_before(message_id)
        self.history.add_message(conversation_id, "user", text)
        if first["id"] == message_id and self.history.conversation(conversation_id)["title_by"] in (
                TITLE_BY_MESSAGE, TITLE_BY_MODEL):  # a new first message: a new title (the model's comes later)
            self.history.rename(conversation_id, title_from(text), by=TITLE_BY_MESSAGE)
        return self._reply(conversation_id, settings, cancel or CancelToken())

    def attach(self, conversation_id: int | None, path: str, question: str, settings: Settings,
               name: str | None = None) -> tuple[int, Message]:
        """Put a document into a conversation: the whole text when it fits what is left of the
        context, else its summary and the passages most related to `question`. Returns the
        conversation id and a note that tells the user which."""
        from app.documents.reading import read_document
        from app.services.retrieval import context_for_chat

        document = read_document(path, name, **settings.parse_limits())  # bad files fail here, before anything is written
        self.ensure_model(settings)
        store = self.documents
        document_id, _ = store.add(document)
        used = 0
        if conversation_id is not None:
            settings = self.settings_for(conversation_id, settings)
            messages = self.prompt_messages(conversation_id, settings)
            used = len(chat_format_for(self.engine).encode(messages)) if messages else 0
        budget = self.engine.n_ctx - used - settings.max_tokens - len(self.engine.tokenize(question)) - 64
        if budget < 64:
            raise UserError("chat_no_room_for_document", name=document.file_name)
        context = context_for_chat(store, document_id, question, budget, count=token_counter(self.engine))
        if conversation_id is None:
            conversation_id = self.history.create_conversation(title_from(document.title), TITLE_BY_DOCUMENT)
        record = {"document_id": document_id, "title": document.title, "note": str(context.note),  # English, for exports
                  "note_said": context.note.to_json(), "text": context.text}  # the note, for the page to word
        self.history.add_message(conversation_id, "document", json.dumps(record, ensure_ascii=False))
        return conversation_id, context.note

    def start_from_answer(self, question: str, answer: str) -> str:
        """A new conversation that begins with a question asked of documents and its answer; its title."""
        if not question.strip():
            raise UserError("chat_message_is_empty")
        title = title_from(question)
        conversation_id = self.history.create_conversation(title)
        self.history.add_message(conversation_id, "user", question)
        self.history.add_message(conversation_id, "assistant", answer)
        return title

    def settings_for(self, conversation_id: int, settings: Settings) -> Settings:
        """`settings` with the conversation's own system prompt, temperature and max reply tokens
        where it has them (`History.set_own_settings`)."""
        own = self.history.own_settings(conversation_id)
        return replace(settings, **{name: value for name, value in own.items() if value is not None})

    def prompt_messages(self, conversation_id: int, settings: Settings, with_tools: bool = False) -> list[dict]:
        """The conversation as the model sees it: system prompt first; failed or empty replies
        left out; saved tool steps become tool calls and results when the format has tools."""
        system, turns = self.prompt_turns(conversation_id, settings, with_tools)
        return system + [turn.message for turn in turns]

    def prompt_turns(self, conversation_id: int, settings: Settings, with_tools: bool = False) -> tuple[list[dict], list[Turn]]:
        """`prompt_messages` as the system message (if any) and the turns, each with its history message's id."""
        settings = self.settings_for(conversation_id, settings)
        system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt.strip() else []
        messages: list[dict] = []
        owners: list[int] = []
        for m in self.history.messages(conversation_id):
            if m["role"] == "tool":
                if with_tools:
                    _append_tool_step(messages, json.loads(m["content"]))
            elif m["role"] == "document":  # an attached document reaches the model as user text
                messages.append({"role": "user", "content": json.loads(m["content"])["text"]})
            elif (m["role"] == "user" and m["status"] != QUEUED) or (
                    m["status"] in CONTEXT_STATUSES and m["content"].strip()):
                messages.append({"role": m["role"], "content": m["content"]})
            owners += [m["id"]] * (len(messages) - len(owners))
        return system, [Turn(owner, message) for owner, message in zip(owners, messages)]

    def enabled_tools(self, settings: Settings) -> list[Tool]:
        """The tools NeMo is offered: built-ins switched on in settings (and MCP tools left on)."""
        if self.toolbox is not None:
            return self.toolbox.offered(settings)
        wanted = {name.strip() for name in settings.tools.split(",")}
        return [tool for tool in builtin_tools(history_search(self.history)) if tool.name in wanted]

    def _reply(self, conversation_id: int, settings: Settings, cancel: CancelToken,
               progress: ProgressCallback = no_progress) -> Iterator[ReplyUpdate]:
        """Stream a reply to the conversation as it stands, with its own settings where it has them;
        `progress` follows the prompt's reading."""
        settings = self.settings_for(conversation_id, settings)
        chat_format = chat_format_for(self.engine)
        tools = self.enabled_tools(settings) if isinstance(chat_format, NemoChatFormat) else []
        sampling = sampling_options(settings)
        system, turns = self.prompt_turns(conversation_id, settings, with_tools=bool(tools))
        messages, _ = fitted_prompt(self.engine, chat_format, self.summaries, conversation_id, system, turns,
                                    sampling.max_tokens, sampling, cancel)
        sampling = replace(sampling, keep_state=True)  # the engine may save it for next time
        completions: list[Completion] = []
        if tools:
            events = self._tool_events(chat_format, messages, tools, sampling, cancel, progress, completions,
                                       settings.tool_choice)
        else:
            completions.append(self.engine.complete(chat_format.encode(messages), sampling, cancel, progress,
                                                    decoder=chat_format.decoder()))
            events = iter(completions[0])
        reply = _ReplyRecorder(self.history, conversation_id, self.engine.model_name,
                               asdict(sampling_options(settings)))
        try:
            for event in events:
                if isinstance(event, Approval):
                    yield ReplyUpdate(conversation_id, reply.message_id, reply.text, approval=event)
                    continue
                if isinstance(event, ToolStep):
                    self.history.add_message(conversation_id, "tool", json.dumps(_step_record(event), ensure_ascii=False))
                else:
                    reply.grow(event)
                yield ReplyUpdate(conversation_id, reply.message_id, reply.text)
            cancelled = cancel.cancelled or (completions and completions[-1].stats.stop_reason == "cancelled")
            reply.status = STOPPED if cancelled else COMPLETE
        except UserError:  # a refusal or a wait that ended is never stored as the reply: it is raised
            reply.status = FAILED
            raise
        except Exception as exc:  # a bug or a failing part: keep what was written, say so in one line
            reply.status = FAILED
            log = log_exception(f"reply in conversation {conversation_id} failed", exc)
            raise UserError("chat_reply_failed", error=f"{type(exc).__name__}: {exc}", log=str(log)) from exc
        finally:
            events.close()
            stats = completions[-1].stats if completions else GenerationStats()
            reply.finish(stats)
        yield ReplyUpdate(conversation_id, reply.message_id, reply.text, True, reply.status, stats)

    def _tool_events(self, chat_format: NemoChatFormat, messages, tools, sampling, cancel, progress, completions,
                     tool_choice: str = "auto"):
        """Text deltas and tool steps from NeMo's native function-calling loop; with `tool_choice`
        "required" or a tool's name, the first reply is a call held to the tools' schemas."""
        def generate(prompt_ids: list[int], calls_schema: dict | None):
            held = replace(sampling, json_schema=json.dumps(calls_schema)) if calls_schema else sampling
            completions.append(self.engine.complete(prompt_ids, held, cancel, progress))
            return completions[-1].ids()

        approve = self.toolbox.approval if self.toolbox is not None else None
        for event in run_tool_loop(generate, chat_format.tekken, messages, tools, stopped=lambda: cancel.cancelled,
                                   approve=approve, tool_choice=tool_choice):
            if isinstance(event, TextDelta):
                yield event.text
            elif isinstance(event, (ToolStep, Approval)):
                yield event


def history_search(history: History) -> ConversationSearch:
    """The search the conversation-search tool runs."""
    def search(query: str) -> list[SearchHit]:
        return [SearchHit(h.conversation_id, h.conversation_title, h.snippet) for h in history.search(query, 10)]

    return search


class _ReplyRecorder:
    """Writes a streaming reply: the row appears with its first text, then is rewritten at
    least every SAVE_EVERY_S, and finished with its status and counters (a reply stopped or failed
    before its first text leaves no row: the conversation ends in the unanswered message, which
    Retry answers). A conversation deleted
    while its reply streams ends the reply with one line (ConversationGone): nothing is left to save."""

    def __init__(self, history: History, conversation_id: int, model: str, options: dict) -> None:
        self.history, self.conversation_id, self.model, self.options = history, conversation_id, model, options
        self.message_id: int | None = None
        self.text, self.status, self._saved_at = "", STOPPED, 0.0

    def grow(self, delta: str) -> None:
        self.text += delta
        if self.message_id is None and self.status == STOPPED and not self.text:
            return  # stopped before the first token: nothing was said, no empty reply is kept
        if self.message_id is None:
            self.message_id = self._write(lambda: self.history.add_message(
                self.conversation_id, "assistant", self.text, STREAMING, model=self.model, options=self.options))
            self._saved_at = time.monotonic()
        elif time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self._write(lambda: self.history.update_message(self.message_id, self.text))
            self._saved_at = time.monotonic()

    def finish(self, stats: GenerationStats) -> None:
        counters = dict(prompt_tokens=stats.prompt_tokens, cached_tokens=stats.cached_tokens,
                        completion_tokens=stats.completion_tokens, ttft_s=stats.ttft_s,
                        tokens_per_s=stats.tokens_per_s)
        if self.message_id is None and not self.text:
            return  # stopped or failed before the first token: nothing was said, no reply is kept
        if self.message_id is None:
            self.message_id = self._write(lambda: self.history.add_message(
                self.conversation_id, "assistant", self.text, self.status, model=self.model,
                options=self.options, **counters))
        else:
            self._write(lambda: self.history.update_message(self.message_id, self.text, self.status, **counters))

    def _write(self, write):
        try:
            return write()
        except UserError:
            try:
                self.history.conversation(self.conversation_id)
            except UserError:
                raise ConversationGone() from None
            raise


class ConversationGone(UserError):
    """The conversation was deleted while its reply was being written."""

    def __init__(self) -> None:
        super().__init__("chat_conversation_gone")


def _step_record(step: ToolStep) -> dict:
    """A tool step as saved in history (role 'tool'); a malformed call is saved under a valid name."""
    call = as_prompt_call(step.call)
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "round": step.round,
            "result": step.result, "error": step.error, "content": step.content, "denied": step.denied}


def _append_tool_step(messages: list[dict], record: dict) -> None:
    """Rebuild the assistant tool-call message (one per round) and the tool result message.
    Rows without a valid tool name (saved by older versions after a Stop) are left out."""
    if not NAME_RE.fullmatch(str(record.get("name") or "")):
        return
    call = {"id": record["id"], "type": "function",
            "function": {"name": record["name"], "arguments": json.dumps(record["arguments"], ensure_ascii=False)}}
    results = [m for m in reversed(messages) if m["role"] != "tool"]
    last = results[0] if results else None
    if last and last.get("tool_calls") and last.get("round") == record["round"] and messages[-1]["role"] == "tool":
        last["tool_calls"].append(call)
    else:
        if messages and messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls"):
            messages.pop()  # text said before a call (imported): a NeMo turn holds text or calls, not both
        messages.append({"role": "assistant", "content": None, "tool_calls": [call], "round": record["round"]})
    messages.append({"role": "tool", "tool_call_id": record["id"], "name": record["name"], "content": record["content"]})
