"""Chat messages -> prompt token ids, the seam between conversations and the engine.

Non-NeMo models: the GGUF's own chat template is rendered with each message's text replaced by
a placeholder; the template's own text is tokenized with control tokens allowed, message text
with `special=False`, so typed `[INST]`, `</s>` or `<|im_start|>` stays plain text.
NeMo models (Tekken pre-tokenizer): the exact V3-Tekken encoder (`nemo_prompt`) is used instead.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Protocol

from .errors import UserError
from .runtime import Engine, LlamaTokenDecoder, TokenDecoder

_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")


class ChatFormat(Protocol):
    """Encodes a conversation into prompt ids and decodes generated ids."""

    def encode(self, messages: list[dict]) -> list[int]: ...

    def decoder(self) -> TokenDecoder: ...


class TemplateChatFormat:
    """The GGUF's Jinja chat template, with message text never read as control tokens."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        llm = engine.llm
        source = llm.metadata.get("tokenizer.chat_template", "")
        if not source:
            raise UserError(f"{engine.info.path.name}: the model has no chat template")
        self._template = _jinja_environment().from_string(source)
        self._bos_text = _token_text(llm, llm.token_bos())
        self._eos_text = _token_text(llm, llm.token_eos())
        self._add_bos = llm._model.add_bos_token() and llm.token_bos() >= 0

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
            bos_token=self._bos_text,
            eos_token=self._eos_text,
        )
        return rendered, texts

    def encode(self, messages: list[dict]) -> list[int]:
        rendered, texts = self.render(messages)
        ids: list[int] = []
        position = 0
        for match in _PLACEHOLDER_RE.finditer(rendered):
            ids += self._engine.tokenize(rendered[position : match.start()], special=True)
            ids += self._engine.tokenize(texts[int(match.group(1))], special=False)
            position = match.end()
        ids += self._engine.tokenize(rendered[position:], special=True)
        bos = self._engine.llm.token_bos()
        if self._add_bos and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    def decoder(self) -> TokenDecoder:
        return LlamaTokenDecoder(self._engine.llm)


def _token_text(llm, token_id: int) -> str:
    if token_id < 0:
        return ""
    return llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")


def _raise_exception(message: str):
    raise UserError(f"chat template error: {message}")


def _jinja_environment():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def chat_format_for(engine: Engine) -> ChatFormat:
    """The right prompt format for the loaded model."""
    if engine.info.is_tekken:
        from .nemo_format import NemoChatFormat  # the exact V3-Tekken encoder

        return NemoChatFormat.for_engine(engine)
    return TemplateChatFormat(engine)


def token_counter(engine: Engine):
    """Counts tokens as the loaded model sees them (Tekken for NeMo models)."""
    if engine.info.is_tekken:
        from .tekken import Tekken

        return Tekken.default().count
    return lambda text: len(engine.tokenize(text))
