"""The chat format for NeMo-family GGUFs: Tekken token ids built exactly as mistral-common
builds them, handed to llama.cpp as ids (its own Tekken pre-tokenizer is approximate)."""

from __future__ import annotations

from .nemo_prompt import encode_chat
from .runtime import Engine, TokenDecoder
from .tekken import Tekken


class NemoChatFormat:
    def __init__(self, tekken: Tekken) -> None:
        self.tekken = tekken

    @classmethod
    def for_engine(cls, engine: Engine) -> "NemoChatFormat":
        """The Tekken vocabulary rebuilt from the loaded GGUF (cached per file)."""
        return cls(Tekken.from_gguf(engine.info.path))

    def encode(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        return encode_chat(self.tekken, messages, tools)

    def decoder(self) -> TokenDecoder:
        return self.tekken.stream_decoder()
