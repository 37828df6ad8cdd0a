"""Chat messages -> prompt token ids, the seam between conversations and the engine.

NeMo models (Tekken vocabulary): the exact V3-Tekken encoder (`app.nemo.prompt`), token for token
as mistral-common builds it, handed to the engine as ids (llama.cpp's own Tekken pre-tokenizer is
approximate). Other models: the GGUF's own chat template is rendered with each message's text
replaced by a placeholder; the template's own text is tokenized with control tokens allowed,
message text with `special=False`, so typed `[INST]`, `</s>` or `<|im_start|>` stays plain text.
A server that builds the prompt itself (`RemoteEngine` without prompt ids) gets the messages; their
ids then only count tokens. Every `encode` returns `PromptIds`: the ids, carrying their messages.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Callable, Protocol

from app.base.errors import UserError
from app.engine.prompt_ids import PromptIds
from app.engine.remote import RemoteEngine
from app.nemo.prompt import encode_chat
from app.nemo.tekken import Tekken
from app.runtime import Engine, TokenDecoder

_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")


class ChatFormat(Protocol):
    """Encodes a conversation into prompt ids and decodes generated ids."""

    def encode(self, messages: list[dict]) -> PromptIds: ...

    def decoder(self) -> TokenDecoder | None:
        """Turns generated ids into text; None when the engine sends text itself."""


class NemoChatFormat:
    """NeMo's V3-Tekken prompt, with native function calling."""

    def __init__(self, tekken: Tekken) -> None:
        self.tekken = tekken

    def encode(self, messages: list[dict], tools: list[dict] | None = None) -> PromptIds:
        return PromptIds(encode_chat(self.tekken, messages, tools), messages)

    def decoder(self) -> TokenDecoder:
        return self.tekken.stream_decoder()


class TemplateChatFormat:
    """The GGUF's Jinja chat template, with message text never read as control tokens."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._spec = engine.chat_template()
        self._template = _jinja_environment().from_string(self._spec.source)

    def render(self, messages: list[dict]) -> tuple[str, list[str]]:
        """The prompt text with placeholders, and the message texts they stand for."""
        texts: list[str] = []
        masked = []
        for message in messages:
            texts.append(str(message.get("content") or ""))
            masked.append({**message, "content": _PLACEHOLDER.format(len(texts) - 1)})
        rendered = self._template.render(
            messages=masked,
            add_generation_prompt=True,
            bos_token=self._spec.bos_text,
            eos_token=self._spec.eos_text,
        )
        return rendered, texts

    def encode(self, messages: list[dict]) -> PromptIds:
        rendered, texts = self.render(messages)
        ids: list[int] = []
        position = 0
        for match in _PLACEHOLDER_RE.finditer(rendered):
            ids += self._engine.tokenize(rendered[position : match.start()], special=True)
            ids += self._engine.tokenize(texts[int(match.group(1))], special=False)
            position = match.end()
        ids += self._engine.tokenize(rendered[position:], special=True)
        if self._spec.add_bos and (not ids or ids[0] != self._spec.bos_id):
            ids.insert(0, self._spec.bos_id)
        return PromptIds(ids, messages)

    def decoder(self) -> TokenDecoder:
        return self._engine.token_decoder()


class ServerChatFormat:
    """The server renders the messages with its own template (`/v1/chat/completions`); the ids count
    them: NeMo's exact prompt for a NeMo model, else each message's role and text as the server
    tokenizes them (the template's few marker tokens per message are not counted)."""

    def __init__(self, engine: RemoteEngine) -> None:
        self._engine = engine
        self._tekken = engine.tekken()

    def encode(self, messages: list[dict]) -> PromptIds:
        if self._tekken is not None:
            return PromptIds(encode_chat(self._tekken, messages), messages)
        text = "".join(f"{m['role']}\n{m.get('content') or ''}\n" for m in messages) + "assistant\n"
        return PromptIds(self._engine.tokenize(text), messages)

    def decoder(self) -> None:
        return None  # the server sends text


def _raise_exception(message: str):
    raise UserError("engine_template_error", error=message)


def _jinja_environment():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def chat_format_for(engine: Engine) -> ChatFormat:
    """The right prompt format for the loaded model."""
    if isinstance(engine, RemoteEngine) and not engine.takes_prompt_ids:
        return ServerChatFormat(engine)
    tekken = engine.tekken()
    return NemoChatFormat(tekken) if tekken is not None else TemplateChatFormat(engine)


def token_counter(engine: Engine) -> Callable[[str], int]:
    """Counts tokens as the loaded model sees them (Tekken for NeMo models)."""
    tekken = engine.tekken()
    if tekken is not None:
        return Tekken.default().count
    return lambda text: len(engine.tokenize(text))
