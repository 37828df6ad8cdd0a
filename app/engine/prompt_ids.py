"""Prompt token ids that remember the chat messages they were encoded from."""

from __future__ import annotations


class PromptIds(list):
    """A list of prompt token ids (every engine takes it as one) that also carries `messages`, the
    chat it encodes: a server that takes no token ids, or whose model's template only the server
    knows, is sent the messages instead. Plain lists of ids (no messages) still work everywhere."""

    def __init__(self, ids=(), messages: list[dict] | None = None) -> None:
        super().__init__(ids)
        self.messages = messages
