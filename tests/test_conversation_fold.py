"""Conversations that never hit the wall, on the real engine (SmolLM2 at a 1,024-token context):
25 turns of about 100 tokens through `chat --conversation last`, the oldest folded into a running
summary kept with the range it covers; a single message larger than the context is refused."""

from __future__ import annotations

import json
import random

import pytest

from app.faces.cli import main
from app.history import History
from app.storage.conversation_summaries import ConversationSummaries

CTX, MAX_TOKENS = 1024, 32


def message(turn: int, rng: random.Random) -> str:
    """About 100 tokens: a fact to remember and a question."""
    towns = ["Ashford", "Brookmere", "Caldwell", "Dunmore", "Elmstead", "Fairhaven", "Glenrock", "Harlow"]
    facts = " ".join(f"In {rng.randint(1700, 1950)} the people of {rng.choice(towns)} built a bridge near "
                     f"{rng.choice(towns)}." for _ in range(5))
    return f"Note {turn}: {facts} Which town is mentioned first in note {turn}?"


def chat(capsys, *args: str) -> dict:
    code = main(["chat", *args, "--model", "smollm2", "--ctx", str(CTX), "--max-tokens", str(MAX_TOKENS),
                 "--temperature", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.timeout(1500)
def test_25_turns_at_a_1024_context_fold_the_oldest_into_a_kept_summary(home, capsys, tmp_path):
    rng = random.Random(7)
    replies = [chat(capsys, message(1, rng))]
    for turn in range(2, 26):
        replies.append(chat(capsys, message(turn, rng), "--conversation", "last"))
    conversation_id = replies[0]["conversation_id"]
    assert {r["conversation_id"] for r in replies} == {conversation_id}
    assert all(r["text"].strip() and r["status"] == "complete" for r in replies), "every turn answers"
    assert all(r["prompt_tokens"] + MAX_TOKENS <= CTX for r in replies), [r["prompt_tokens"] for r in replies]

    exported = tmp_path / "export.json"
    assert main(["export", "--conversation", str(conversation_id), "-o", str(exported)]) == 0
    [saved] = json.loads(exported.read_text(encoding="utf-8"))["conversations"]
    assert len(saved["messages"]) == 50 and [m["role"] for m in saved["messages"]] == ["user", "assistant"] * 25

    history = History(home / "nemo-chat.db")
    rows = ConversationSummaries(history).of(conversation_id)
    ids = [m["id"] for m in history.messages(conversation_id)]
    assert rows, "the oldest turns were folded"
    assert len(rows) <= 12, "a summary is made again only when its range must grow, not on every turn"
    assert [r["last_message_id"] for r in rows] == sorted({r["last_message_id"] for r in rows}), "ranges grow"
    for row in rows:
        covered = ids[ids.index(row["first_message_id"]):ids.index(row["last_message_id"]) + 1]
        assert row["first_message_id"] == ids[0] and row["messages"] == len(covered) and row["text"].strip()
        assert history.message(row["last_message_id"])["role"] == "assistant", "folded at a turn's end"
    assert ids.index(rows[-1]["last_message_id"]) >= 10, "about half the conversation is folded by the end"
    assert len(history.search("Note 1:")) >= 1, "folded messages stay searchable"
    history.close()


def test_a_single_message_larger_than_the_context_is_refused_in_one_line(home, capsys):
    huge = "The bridge at Harlow was built in 1871. " * 200  # about 2,000 tokens
    first = chat(capsys, "Hello!")
    code = main(["chat", huge, "--conversation", "last", "--model", "smollm2", "--ctx", str(CTX),
                 "--max-tokens", str(MAX_TOKENS)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "context holds 1,024" in err, err
    history = History(home / "nemo-chat.db")
    assert ConversationSummaries(history).of(first["conversation_id"]) == []
    history.close()
