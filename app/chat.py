"""Conversations with the model: send, retry, edit; replies stream into SQLite as they grow.

The UI and the CLI both drive chat through this module; it never imports gradio.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterator

from .chat_format import chat_format_for
from .config import Settings
from .errors import UserError
from .history import COMPLETE, FAILED, STOPPED, STREAMING, History
from .jobs import CancelToken
from .models import resolve_model
from .runtime import Engine, GenerationStats, LoadOptions, SamplingOptions

SAVE_EVERY_S = 0.5  # a streaming reply reaches the database at least this often
CONTEXT_STATUSES = {COMPLETE, STOPPED, "interrupted"}  # failed replies are not sent back


@dataclass(frozen=True)
class ReplyUpdate:
    """The reply so far; `done` on the last update, which carries the stats."""

    conversation_id: int
    message_id: int
    text: str
    done: bool = False
    status: str = STREAMING
    stats: GenerationStats | None = None


def load_options(settings: Settings) -> LoadOptions:
    return LoadOptions(
        model_path=str(resolve_model(settings.model)),
        n_ctx=settings.n_ctx,
        n_gpu_layers=settings.n_gpu_layers,
        n_threads=settings.n_threads,
        kv_type=settings.kv_type,
    )


def sampling_options(settings: Settings) -> SamplingOptions:
    return SamplingOptions(
        temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens
    )


def title_from(text: str) -> str:
    words = " ".join(text.split())
    return (words[:57] + "…") if len(words) > 60 else (words or "New chat")


class ChatService:
    def __init__(self, history: History, engine: Engine) -> None:
        self.history = history
        self.engine = engine

    def ensure_model(self, settings: Settings) -> None:
        self.engine.load(load_options(settings))

    def send(self, conversation_id: int | None, text: str, settings: Settings,
             cancel: CancelToken | None = None) -> Iterator[ReplyUpdate]:
        """Add the user's message (to a new conversation when id is None) and stream a reply."""
        if not text.strip():
            raise UserError("the message is empty")
        self.ensure_model(settings)  # before anything is written: a bad model stores nothing
        if conversation_id is None:
            conversation_id = self.history.create_conversation(title_from(text))
        self.history.add_message(conversation_id, "user", text)
        return self._reply(conversation_id, settings, cancel or CancelToken())

    def retry(self, conversation_id: int, settings: Settings,
              cancel: CancelToken | None = None) -> Iterator[ReplyUpdate]:
        """Drop the replies after the last user message and answer it again."""
        self.ensure_model(settings)
        messages = self.history.messages(conversation_id)
        last_user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        if last_user is None:
            raise UserError("nothing to retry: the conversation has no message")
        later = [m for m in messages if m["id"] > last_user["id"]]
        if later:
            self.history.delete_messages_from(conversation_id, later[0]["id"])
        return self._reply(conversation_id, settings, cancel or CancelToken())

    def edit(self, conversation_id: int, message_id: int, text: str, settings: Settings,
             cancel: CancelToken | None = None) -> Iterator[ReplyUpdate]:
        """Replace a user message, forget everything after it, and answer again."""
        if not text.strip():
            raise UserError("the message is empty")
        message = self.history.message(message_id)
        if message["conversation_id"] != conversation_id or message["role"] != "user":
            raise UserError("only your own messages can be edited")
        self.ensure_model(settings)
        self.history.delete_messages_from(conversation_id, message_id)
        self.history.add_message(conversation_id, "user", text)
        return self._reply(conversation_id, settings, cancel or CancelToken())

    def prompt_messages(self, conversation_id: int, settings: Settings) -> list[dict]:
        """The conversation as the model sees it: system prompt first; failed or empty replies left out."""
        messages = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt.strip() else []
        for m in self.history.messages(conversation_id):
            if m["role"] == "user" or (m["status"] in CONTEXT_STATUSES and m["content"].strip()):
                messages.append({"role": m["role"], "content": m["content"]})
        return messages

    def _reply(self, conversation_id: int, settings: Settings, cancel: CancelToken) -> Iterator[ReplyUpdate]:
        chat_format = chat_format_for(self.engine)
        prompt_ids = chat_format.encode(self.prompt_messages(conversation_id, settings))
        options = asdict(sampling_options(settings))
        message_id = self.history.add_message(
            conversation_id, "assistant", "", STREAMING, model=self.engine.info.name, options=options
        )
        completion = self.engine.complete(prompt_ids, sampling_options(settings), cancel,
                                          decoder=chat_format.decoder())
        text, status, saved_at = "", STOPPED, time.monotonic()
        try:
            for delta in completion:
                text += delta
                if time.monotonic() - saved_at >= SAVE_EVERY_S:
                    self.history.update_message(message_id, text)
                    saved_at = time.monotonic()
                yield ReplyUpdate(conversation_id, message_id, text)
            status = STOPPED if completion.stats.stop_reason == "cancelled" else COMPLETE
        except UserError as exc:
            status, text = FAILED, text or str(exc)
            raise
        finally:
            stats = completion.stats
            self.history.update_message(
                message_id, text, status,
                prompt_tokens=stats.prompt_tokens, cached_tokens=stats.cached_tokens,
                completion_tokens=stats.completion_tokens, ttft_s=stats.ttft_s,
                tokens_per_s=stats.tokens_per_s,
            )
        yield ReplyUpdate(conversation_id, message_id, text, True, status, stats)
