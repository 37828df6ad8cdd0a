"""Running summaries of long conversations (migration m009_conversation_summaries in history.py):
each row is a summary the model wrote of a conversation's oldest messages, with the range it
covers. The messages themselves stay in `messages` (search and export see all of them)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.history import History


class ConversationSummaries:
    """Shares History's one connection; safe to share between threads."""

    def __init__(self, history: History) -> None:
        self.database = history.database
        self.db = history.db

    def save(self, conversation_id: int, first_message_id: int, last_message_id: int, messages: int, text: str,
             model: str) -> int:
        """Keep a summary of messages `first_message_id`..`last_message_id` (`messages` of them)."""
        with self.database.transaction() as conn:
            return conn.execute(
                "INSERT INTO conversation_summaries (conversation_id, first_message_id, last_message_id, messages,"
                " text, model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [conversation_id, first_message_id, last_message_id, messages, text, model, time.time()]).lastrowid

    def covering(self, conversation_id: int, message_ids: list[int]) -> dict | None:
        """The summary that covers the longest start of `message_ids` (a branch's messages in order):
        it starts at the first of them and ends at one of them; None if there is none."""
        if not message_ids:
            return None
        with self.database.lock:
            rows = list(self.db.query(
                "SELECT * FROM conversation_summaries WHERE conversation_id = ? AND first_message_id = ?"
                " ORDER BY id DESC", [conversation_id, message_ids[0]]))
        place = {message_id: n for n, message_id in enumerate(message_ids)}
        rows = [row for row in rows if row["last_message_id"] in place]
        return max(rows, key=lambda row: (place[row["last_message_id"]], row["id"]), default=None)

    def of(self, conversation_id: int) -> list[dict]:
        """Every summary of the conversation, oldest first."""
        with self.database.lock:
            return list(self.db.query("SELECT * FROM conversation_summaries WHERE conversation_id = ? ORDER BY id",
                                      [conversation_id]))
