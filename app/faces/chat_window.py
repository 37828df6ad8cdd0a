"""Long conversations in the Chat tab: only the latest bubbles are drawn (a Chatbot with thousands
of bubbles is slow to draw and to scroll); a first bubble offers the earlier ones. No Gradio here:
the button it holds is picked up by the page script of `ui_history`."""

from __future__ import annotations

from app.faces.i18n import text

CHAT_WINDOW = 200  # bubbles drawn at first; "show earlier messages" adds as many again


class ChatWindows:
    """How many of its latest bubbles each conversation shows (CHAT_WINDOW unless widened)."""

    def __init__(self) -> None:
        self._sizes: dict[int, int] = {}

    def widen(self, conversation_id: int) -> None:
        self._sizes[conversation_id] = self._sizes.get(conversation_id, CHAT_WINDOW) + CHAT_WINDOW

    def reach(self, conversation_id: int, from_end: int) -> None:
        """Show at least the last `from_end` bubbles (a search hit far up must be drawn)."""
        self._sizes[conversation_id] = max(self._sizes.get(conversation_id, CHAT_WINDOW), from_end)

    def cut(self, conversation_id: int | None, shown: list[dict], ids: list,
            language: str = "en") -> tuple[list[dict], list]:
        """The latest bubbles of `shown` (and their ids), after a note that offers the earlier ones."""
        size = self._sizes.get(conversation_id, CHAT_WINDOW) if conversation_id is not None else len(shown)
        if len(shown) <= size:
            return shown, ids
        label = text(language, "history_show_earlier", count=f"{len(shown) - size:,}")
        note = {"role": "assistant",
                "content": f'<button type="button" class="show-earlier" value="earlier:{conversation_id}">'
                           f'{label}</button>'}
        return [note, *shown[-size:]], [None, *ids[-size:]]
