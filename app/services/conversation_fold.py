"""Conversations that never hit the wall: when a conversation's prompt (system, attached documents,
turns, room for the reply) would pass the context, its oldest turns are folded into a running
summary written by the model.

The prompt becomes: system (with the summary), then the latest turns that fit. The summary is kept
with the range of messages it covers (app/storage/conversation_summaries.py) and made again only
when that range must grow: the new one is written from the kept one plus the turns added to the
range, in as many calls as it takes. The fold leaves room (a quarter of the context) so that it is
not redone on every turn. The messages themselves stay in history, search and export. A latest
message that does not fit even alone is left to the engine, which refuses it in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from app.base.jobs import CancelToken
from app.runtime import Engine, SamplingOptions
from app.storage.conversation_summaries import ConversationSummaries

SUMMARY_TOKENS = 256  # most tokens of the running summary (fewer on small contexts)
MARGIN = 8
INSTRUCTIONS = ("Summarize the conversation below for someone who will continue it: keep names, facts, numbers, "
                "decisions, questions still open and what the user wants, in at most {words} words. Start from the "
                "summary of its earlier part when one is given. Reply with the summary only.")


@dataclass(frozen=True)
class Turn:
    """One message as the model sees it, and the id of the history message it comes from."""

    message_id: int
    message: dict


@dataclass(frozen=True)
class Fold:
    """The summary standing for messages `first_message_id`..`last_message_id` (`messages` of them)."""

    summary_id: int
    text: str
    first_message_id: int
    last_message_id: int
    messages: int


def fitted_prompt(engine: Engine, chat_format, summaries: ConversationSummaries, conversation_id: int,
                  system: list[dict], turns: list[Turn], reply_tokens: int, sampling: SamplingOptions,
                  cancel: CancelToken) -> tuple[list[dict], Fold | None]:
    """The messages to send for a reply of at most `reply_tokens`: all of them when they fit, else
    the system prompt with the running summary, then the latest turns that fit."""
    def size(messages: list[dict]) -> int:
        return len(chat_format.encode(messages))

    n_ctx = engine.n_ctx
    limit = n_ctx - reply_tokens - MARGIN
    everything = system + [t.message for t in turns]
    if size(everything) <= limit:
        return everything, None
    ids = [t.message_id for t in turns]
    kept = summaries.covering(conversation_id, ids)
    kept_end = ids.index(kept["last_message_id"]) + 1 if kept else 0
    while kept and kept_end < len(turns) and turns[kept_end].message_id == ids[kept_end - 1]:
        kept_end += 1  # the other parts of the last message covered (a tool round)
    if kept and kept_end < len(turns):
        prompt = _with_summary(system, kept["text"]) + _messages(turns[kept_end:])
        if size(prompt) <= limit:  # the kept summary still does: no new one
            return prompt, Fold(kept["id"], kept["text"], kept["first_message_id"], kept["last_message_id"],
                                kept["messages"])
    summary_tokens = min(SUMMARY_TOKENS, n_ctx // 8)
    cut = _cut(size, system, turns, limit - summary_tokens - 32, n_ctx // 4)
    if cut is None:
        return everything, None  # the latest message alone does not fit: the engine says so in one line
    start, text = (kept_end, kept["text"]) if kept and kept_end < cut else (0, "")
    sampling = replace(sampling, max_tokens=summary_tokens)
    while start < cut:
        end, messages = _batch(size, text, turns, start, cut, n_ctx - summary_tokens - MARGIN, summary_tokens)
        completion = engine.complete(chat_format.encode(messages),
                                     sampling, cancel, decoder=chat_format.decoder())
        written = "".join(completion).strip()
        if cancel.cancelled:
            return everything, None  # stopped: nothing kept; the reply's own call stops at once
        text, start = written or text, end
    folded = ids[:cut]
    summary_id = summaries.save(conversation_id, folded[0], folded[-1], len(set(folded)), text, engine.model_name)
    fold = Fold(summary_id, text, folded[0], folded[-1], len(set(folded)))
    return _with_summary(system, text) + _messages(turns[cut:]), fold


def _cut(size, system: list[dict], turns: list[Turn], room: int, slack: int) -> int | None:
    """Where to fold: the first turn kept starts a user message, the latest turn is always kept;
    the earliest such place whose kept turns fit `room` less `slack`, else the earliest that fits."""
    places = [i for i in range(1, len(turns)) if turns[i].message["role"] == "user"
              and turns[i].message_id != turns[i - 1].message_id]
    fitting = [i for i in places if size(system + _messages(turns[i:])) <= room]
    roomy = [i for i in fitting if size(system + _messages(turns[i:])) <= room - slack]
    return (roomy or fitting or [None])[0]


def _batch(size, text: str, turns: list[Turn], start: int, cut: int, room: int,
           summary_tokens: int) -> tuple[int, list[dict]]:
    """The most turns from `start` (at least one) that one summary call can read, and its messages;
    a message too long alone is read by its start."""
    end = start + 1
    while end < cut and size(_summary_messages(text, turns[start:end + 1], summary_tokens)) <= room:
        end += 1
    most_chars = None
    messages = _summary_messages(text, turns[start:end], summary_tokens)
    while size(messages) > room and most_chars != 0:
        most_chars = len(_said(turns[start].message)) // 2 if most_chars is None else most_chars // 2
        messages = _summary_messages(text, turns[start:end], summary_tokens, most_chars)
    return end, messages


def _summary_messages(previous: str, turns: list[Turn], summary_tokens: int, most_chars: int | None = None) -> list[dict]:
    lines = [f"Summary of the earlier part:\n{previous}\n"] if previous else []
    lines += [f"{_speaker(t.message)}: {_said(t.message)[:most_chars]}" for t in turns]
    system = INSTRUCTIONS.format(words=max(20, int(summary_tokens * 0.6)))
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(lines)}]


def _speaker(message: dict) -> str:
    return {"user": "User", "assistant": "Assistant", "tool": "Tool result"}.get(message["role"], message["role"])


def _said(message: dict) -> str:
    if message.get("content"):
        return str(message["content"])
    return json.dumps(message.get("tool_calls") or [], ensure_ascii=False)


def _with_summary(system: list[dict], summary: str) -> list[dict]:
    prompt = system[0]["content"] + "\n\n" if system else ""
    return [{"role": "system", "content": f"{prompt}Summary of the earlier part of this conversation:\n{summary}"}]


def _messages(turns: list[Turn]) -> list[dict]:
    return [t.message for t in turns]
