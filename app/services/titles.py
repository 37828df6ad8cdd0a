"""Conversation titles the model writes: short, in the conversation's language, after the first reply.

A conversation starts with its first message's words as its title (`chat.title_from`); once the
first reply is complete, `retitle` asks the model for a better one. The request is small
(TITLE_MAX_TOKENS) so it holds the model only briefly, and a title the user chose is never replaced.
"""

from __future__ import annotations

import re

from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.documents.language import detect_language, language_name
from app.engine.chat_format import chat_format_for
from app.history import COMPLETE, TITLE_BY_MESSAGE, TITLE_BY_MODEL, History
from app.runtime import Engine, SamplingOptions

TITLE_MAX_TOKENS = 16  # a few words; the model is held a fraction of a second
TITLE_CHARS = 60
EXCERPT_CHARS = 600  # of the question and of the answer, enough to know what the talk is about
TITLE_SAMPLING = SamplingOptions(temperature=0.2, max_tokens=TITLE_MAX_TOKENS, seed=0)


def title_prompt(question: str, answer: str) -> list[dict]:
    """The request for a title, naming the conversation's language (detected from the question)."""
    language = language_name(detect_language(question))
    return [{"role": "user", "content": (
        f"Write a title of at most six words for this conversation, in {language}. "
        "Reply with the title only.\n\n"
        f"User: {question[:EXCERPT_CHARS]}\nAssistant: {answer[:EXCERPT_CHARS]}")}]


def clean_title(text: str) -> str:
    """The first line of what the model wrote, without a 'Title:' label, quotes, Markdown or a final stop."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"^\s*(?:#+\s*)?(?:\*\*)?\s*title\s*:\s*", "", line, flags=re.IGNORECASE)
    for _ in range(2):  # "**Title**." and "Title." alike
        line = line.strip().rstrip(".。").strip("\"'“”«»*_#`")
    line = " ".join(line.split())
    return (line[: TITLE_CHARS - 1] + "…") if len(line) > TITLE_CHARS else line


def write_title(engine: Engine, question: str, answer: str, cancel: CancelToken | None = None) -> str:
    """A short title for an exchange, in the question's language; "" when stopped or nothing usable came."""
    chat_format = chat_format_for(engine)
    completion = engine.complete(chat_format.encode(title_prompt(question, answer)), TITLE_SAMPLING, cancel,
                                 decoder=chat_format.decoder())
    text = completion.text()
    return "" if cancel is not None and cancel.cancelled else clean_title(text)


def wants_title(history: History, conversation_id: int) -> bool:
    """Still titled by its first message (and not deleted), and the first reply is complete."""
    try:
        conversation = history.conversation(conversation_id)
    except UserError:
        return False  # deleted meanwhile
    if conversation["title_by"] != TITLE_BY_MESSAGE or conversation["deleted_at"] is not None:
        return False
    return any(m["role"] == "assistant" and m["status"] == COMPLETE for m in history.messages(conversation_id))


def retitle(history: History, engine: Engine, conversation_id: int, cancel: CancelToken | None = None) -> str:
    """Let the model title the conversation from its first exchange; the title kept ("" when none).
    A title the user (or a document) gave meanwhile is left as it is."""
    rows = history.messages(conversation_id)
    question = next((m["content"] for m in rows if m["role"] == "user"), "")
    answer = next((m["content"] for m in rows if m["role"] == "assistant" and m["status"] == COMPLETE), "")
    if not question or not answer:
        return ""
    title = write_title(engine, question, answer, cancel)
    if not title:
        return ""
    with history.database.transaction():
        if history.conversation(conversation_id)["title_by"] != TITLE_BY_MESSAGE:
            return ""
        history.rename(conversation_id, title, by=TITLE_BY_MODEL)
    return title
