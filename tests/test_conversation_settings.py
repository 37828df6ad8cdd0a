"""A conversation's own system prompt, temperature and max reply tokens, and pinned conversations:
stored (real SQLite), used by the chat service (real SmolLM2), exported and imported."""

from __future__ import annotations

import json

import pytest
from test_chat import service  # noqa: F401  (the chat service on the real engine and a fresh SQLite file)

from app.base.config import Settings
from app.base.errors import UserError
from app.history import History
from app.services.exchange import export_json, import_files

SETTINGS = Settings(model="smollm2", n_ctx=2048, temperature=0.0, max_tokens=40, system_prompt="Be brief.")
LONG_ANSWER = "Count from one to fifty in words, separated by commas."


def test_a_conversations_own_max_reply_tokens_bound_its_reply_and_the_others_keep_the_default(service):
    own = service.history.create_conversation("Short")
    service.history.set_own_settings(own, max_tokens=6, temperature=0.0)
    short = list(service.send(own, LONG_ANSWER, SETTINGS))[-1]
    default = list(service.send(None, LONG_ANSWER, SETTINGS))[-1]
    assert short.stats.completion_tokens <= 6 and short.stats.stop_reason == "length"
    assert default.stats.completion_tokens > 6
    saved = json.loads(service.history.message(short.message_id)["options"])
    assert saved["max_tokens"] == 6 and json.loads(service.history.message(default.message_id)["options"])["max_tokens"] == 40


def test_a_conversations_own_system_prompt_and_temperature_reach_the_model(service):
    own = service.history.create_conversation("Pirate")
    service.history.add_message(own, "user", "Who are you?")
    other = service.history.create_conversation("Plain")
    service.history.add_message(other, "user", "Who are you?")
    service.history.set_own_settings(own, system_prompt="You are Captain Zorblax, a pirate.", temperature=0.9)
    assert service.prompt_messages(own, SETTINGS)[0] == {"role": "system", "content": "You are Captain Zorblax, a pirate."}
    assert service.prompt_messages(other, SETTINGS)[0] == {"role": "system", "content": "Be brief."}
    final = list(service.retry(own, SETTINGS))[-1]
    assert final.done and json.loads(service.history.message(final.message_id)["options"])["temperature"] == 0.9


def test_blank_means_the_default_and_values_out_of_range_are_refused_with_a_key(service):
    cid = service.history.create_conversation("x")
    service.history.set_own_settings(cid, system_prompt="   ", temperature=None, max_tokens=None)
    assert service.history.own_settings(cid) == {"system_prompt": None, "temperature": None, "max_tokens": None}
    for bad, key in (({"temperature": 2.5}, "history_bad_temperature"), ({"max_tokens": 0}, "history_bad_max_tokens")):
        with pytest.raises(UserError) as refused:
            service.history.set_own_settings(cid, **bad)
        assert refused.value.message.key == key
    assert service.settings_for(cid, SETTINGS) == SETTINGS


def test_pinned_conversations_come_first_in_the_sidebar_order_and_unpinned_go_back(tmp_path):
    history = History(tmp_path / "h.db")
    first, second, third = (history.create_conversation(name) for name in ("first", "second", "third"))
    history.pin(first)
    assert [c["id"] for c in history.conversations(pinned_first=True)] == [first, third, second]
    assert [c["id"] for c in history.conversations()] == [third, second, first]  # newest first ("last" stays last)
    history.pin(first, False)
    assert [c["id"] for c in history.conversations(pinned_first=True)] == [third, second, first]
    history.close()


def test_export_then_import_keeps_own_settings_and_the_pin_and_says_what_it_leaves_out(tmp_path):
    source = History(tmp_path / "a.db")
    cid = source.create_conversation("Pirate")
    source.add_message(cid, "user", "Ahoy")
    source.set_own_settings(cid, system_prompt="Talk like a pirate.", temperature=0.7, max_tokens=64)
    source.pin(cid)
    plain = source.create_conversation("Plain")
    source.add_message(plain, "user", "Hello")
    exported = export_json(source)
    source.close()
    pirate = next(c for c in exported["conversations"] if c["title"] == "Pirate")
    assert pirate["settings"] == {"system_prompt": "Talk like a pirate.", "temperature": 0.7, "max_tokens": 64}
    assert pirate["pinned"] is True
    next(c for c in exported["conversations"] if c["title"] == "Plain")["settings"] = {"temperature": "hot", "max_tokens": 5}
    (tmp_path / "export.json").write_text(json.dumps(exported), encoding="utf-8")
    target = History(tmp_path / "b.db")
    result = import_files(target, [tmp_path / "export.json"])
    listed = target.conversations(pinned_first=True)
    assert [c["title"] for c in listed] == ["Pirate", "Plain"] and listed[0]["pinned_at"] and not listed[1]["pinned_at"]
    assert target.own_settings(listed[0]["id"]) == pirate["settings"]
    assert target.own_settings(listed[1]["id"]) == {"system_prompt": None, "temperature": None, "max_tokens": 5}
    assert result.skipped == 1 and "temperature 'hot'" in str(result.notes[0])
    target.close()
