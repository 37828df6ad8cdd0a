"""Conversations that never re-read: K/V states saved to the home and restored, in this process or
a new one; never across a different model file; within a disk budget (least recently used first)."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
from conftest import run_cli

from app.engine.kv_states import KvStateStore
from app.engine.llama import LlamaEngine
from app.runtime import LoadOptions, SamplingOptions

KEEP = SamplingOptions(temperature=0.0, max_tokens=8, keep_state=True)
STORY = ("The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps, "
         "polishing the great lens and writing the weather into a worn leather logbook. ")


def test_a_conversation_continued_in_a_new_process_reads_only_its_new_tokens(home):
    first = run_cli("chat", STORY * 6 + "Who climbs the stairs?", "--model", "smollm2", "--max-tokens", "8",
                    "--temperature", "0", "--json", home=home)
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    states = list((home / "kv-states").glob("*.kv"))
    assert len(states) == 1, "the first process saved its conversation's state when it stopped"
    assert stat.S_IMODE(states[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "kv-states").stat().st_mode) == 0o700

    result = run_cli("chat", "And when?", "--conversation", "last", "--model", "smollm2", "--max-tokens", "8",
                     "--temperature", "0", "--json", home=home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["conversation_id"] == started["conversation_id"]
    assert out["prompt_tokens"] > started["prompt_tokens"] + started["completion_tokens"]
    assert out["cached_tokens"] >= 0.9 * out["prompt_tokens"], out


@pytest.fixture()
def model_copy(tmp_path, model_path):
    copy = tmp_path / "model" / model_path.name
    copy.parent.mkdir()
    shutil.copy2(model_path, copy)
    return copy


def _reply_stats(engine: LlamaEngine, model, prompt: list[int] | str):
    engine.load(LoadOptions(str(model), n_ctx=1024, n_batch=256))
    ids = engine.tokenize(prompt) if isinstance(prompt, str) else prompt
    completion = engine.complete(ids, KEEP)
    completion.text()
    engine.unload()  # the app stops: the state is saved
    return completion.stats


def test_a_state_is_restored_by_a_new_engine_but_never_for_a_changed_model_file(tmp_path, model_copy):
    engine = LlamaEngine(tmp_path / "states", 1 << 30)
    prompt = STORY * 5
    assert _reply_stats(engine, model_copy, prompt).cached_tokens == 0
    again = _reply_stats(engine, model_copy, prompt)
    assert again.cached_tokens == again.prompt_tokens - 1, "the same file: the saved state is restored"

    os.utime(model_copy)  # touched: a new modification time
    assert _reply_stats(engine, model_copy, prompt).cached_tokens == 0

    before = model_copy.stat()
    with model_copy.open("r+b") as file:  # one letter of a vocabulary entry changed, size and time kept
        head = file.read(1 << 20)
        at = head.index(b"hello")
        file.seek(at)
        file.write(b"hellp")
    os.utime(model_copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _reply_stats(engine, model_copy, prompt).cached_tokens == 0


def test_switching_conversations_saves_the_one_left_and_restores_it(tmp_path, model_path):
    engine = LlamaEngine(tmp_path / "states", 1 << 30)
    engine.load(LoadOptions(str(model_path), n_ctx=1024, n_batch=256))
    try:
        first = engine.tokenize(STORY * 5)
        other = engine.tokenize("A recipe for bread: flour, water, salt and time. " * 12)
        engine.complete(first, KEEP).text()
        engine.complete(other, KEEP).text()  # the one slot moves on: the first conversation is saved
        follow = engine.complete(first + engine.tokenize(" More?"), KEEP)
        follow.text()
        assert follow.stats.cached_tokens >= len(first)
        engine.complete(engine.tokenize("Hello " * 80), SamplingOptions(temperature=0.0, max_tokens=4)).text()
    finally:
        engine.unload()  # waits for the files
    states = list((tmp_path / "states").glob("*.kv"))
    assert len(states) == 3, "the first, the other and the followed conversation; not the prompt not to keep"


def test_a_full_budget_evicts_the_state_used_longest_ago(tmp_path):
    folder = tmp_path / "states"
    kind = {"model": "a.gguf", "n_ctx": 1024}
    store = KvStateStore(folder, 3 * 1200, kind)
    paths = [store.save([i] * 50, bytes([i]) * 900) for i in range(3)]
    assert all(path.exists() for path in paths)
    for age, path in enumerate(paths):  # saved in order, oldest first
        os.utime(path, ns=(age * 10**9, age * 10**9))
    assert store.load(store.best([0] * 50)[0]) == bytes([0]) * 900  # the oldest is used: now the newest
    fourth = store.save([3] * 50, bytes([3]) * 900)
    assert fourth.exists() and paths[0].exists() and paths[2].exists()
    assert not paths[1].exists(), "the state used longest ago made room"
    assert sum(p.stat().st_size for p in folder.glob("*.kv")) <= 3 * 1200
    assert store.save([9] * 50, bytes(5000)) is None, "a state larger than the whole budget is not kept"

    other = KvStateStore(folder, 3 * 1200, {**kind, "model": "b.gguf"})
    assert other.best([0] * 50) == (None, 0), "each kind of context sees only its own states"
