"""Whole-document summaries with the real SmolLM2 at a 2048-token context: one pass, map-reduce over
a document of more than 100k tokens with Stop and resume, the CLI, and context for a chat."""

from __future__ import annotations

import json
import threading
import time

import pytest

from app.base.jobs import Job
from app.storage.document_store import DocumentStore
from app.documents.reading import read_document
from app.history import History
from app.engine.llama import LlamaEngine
from app.runtime import LoadOptions, SamplingOptions
from app.engine.chat_format import token_counter
from app.base.jobs import CancelToken
from app.documents.language import LanguageCheck
from app.services.engine_calls import PARTIAL, READING, WRITING
from app.services.retrieval import context_for_chat
from app.faces.progress_text import summary_line
from app.services.summarize import FINAL, MAP, REDUCE, SINGLE, SummaryOptions, summarize
from conftest import run_cli
from corpora import long_markdown
from test_documents import CHINESE, ENGLISH, FRENCH, make_pdf

GREEDY = SamplingOptions(temperature=0.0)


@pytest.fixture()
def store(tmp_path) -> DocumentStore:
    return DocumentStore(History(tmp_path / "nemo-chat.db"))


class CountingEngine:
    """The real engine, counting `complete` calls; `stop_at` sets the job's cancel token as that call starts."""

    def __init__(self, engine, stop_at: int | None = None) -> None:
        self.engine, self.stop_at, self.calls = engine, stop_at, 0

    def complete(self, prompt_ids, sampling, cancel, progress=None, decoder=None):
        self.calls += 1
        if self.calls == self.stop_at:
            cancel.cancel()  # Stop pressed while this call is reading its prompt
        return self.engine.complete(prompt_ids, sampling, cancel, decoder=decoder)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def run_to_end(updates):
    last = None
    for last in updates:
        pass
    return last.result


def test_a_short_document_is_summarized_in_one_pass_and_kept(tmp_path, store, engine):
    path = make_pdf(tmp_path / "council.pdf", [ENGLISH * 3, ENGLISH * 2], title="Council news")
    document_id, _ = store.add(read_document(path))
    updates = list(summarize(engine, store, document_id, SummaryOptions("short", references=True), GREEDY))
    result = updates[-1].result
    assert result and not result.stopped and result.text.strip()
    assert [level.kind for level in result.levels] == [SINGLE] and result.engine_calls == 1
    assert "[p. 1]" in result.levels[0].groups[0][0], "references travel with the text"
    assert updates[-1].progress.done == updates[-1].progress.total == 1
    assert updates[-1].tokens_read == updates[-1].tokens_total > 100
    streamed = [u.text for u in updates if u.result is None and u.text]
    assert len(streamed) > 3 and result.text.startswith(streamed[0]), "the summary streams in"
    [kept] = store.summaries(document_id)
    assert kept["text"] == result.text and kept["options"] == {"length": "short", "language": "en", "references": True}
    assert result.language == LanguageCheck("en", "en"), "the summary is in the language asked for"

    again = run_to_end(summarize(CountingEngine(engine), store, document_id, SummaryOptions("short", references=True),
                                 GREEDY))
    assert (again.engine_calls, again.cached_calls, again.text) == (0, 1, result.text)


def test_a_summary_in_another_language_than_asked_is_caught(tmp_path, store, engine):
    """Asked for French, SmolLM2 summarizes the English document in English: the result says so."""
    document_id, _ = store.add(read_document(make_pdf(tmp_path / "news.pdf", [ENGLISH * 2], title="Council news")))
    result = run_to_end(summarize(engine, store, document_id, SummaryOptions("short", "fr"), GREEDY))
    assert not result.stopped and result.language == LanguageCheck("fr", "en"), result.text


@pytest.fixture(scope="module")
def small_engine(model_path):
    """The real engine with a 1,024-token context: a document 25 times its size needs every level."""
    engine = LlamaEngine()
    engine.load(LoadOptions(str(model_path), n_ctx=1024, n_batch=256))
    yield engine
    engine.unload()


@pytest.mark.timeout(1200)
def test_25_contexts_of_text_map_reduce_with_stop_and_resume(tmp_path, store, small_engine):
    """Far past the context: map, reduce and final levels, Stop, and a resume that does only the
    missing calls (the 103k-token run of the same scenario is `bench/bench_summarize.py`)."""
    engine = small_engine
    path = tmp_path / "chronicle.md"
    path.write_text(long_markdown(16_000), encoding="utf-8")
    document = read_document(path)
    assert document.tokens > 25 * engine.n_ctx
    document_id, _ = store.add(document)
    options = SummaryOptions("short")

    started = time.monotonic()
    stopping = CountingEngine(engine, stop_at=12)
    outcome = Job(lambda progress, cancel: summarize(stopping, store, document_id, options, GREEDY, cancel,
                                                     partial_tokens=32)).run()
    first = outcome.value
    assert outcome.stopped and first.stopped and first.text == "" and stopping.calls == 12
    assert len(first.levels[0].outputs) == 11, "eleven chunks done, the twelfth stopped"
    assert store.summaries(document_id) == [], "a stopped summary is not kept"

    counting = CountingEngine(engine)
    updates = []
    resumed = time.monotonic()
    result = run_to_end(u for u in summarize(counting, store, document_id, options, GREEDY, partial_tokens=32)
                        if not updates.append(u))
    took, resumed = time.monotonic() - started, time.monotonic() - resumed
    levels = result.levels
    calls = sum(len(level.groups) for level in levels)
    print(f"\n{document.tokens:,} Tekken tokens, {result.chunks} chunks, {len(levels)} levels "
          f"{[len(level.groups) for level in levels]}, {calls} calls, resumed run {counting.calls} engine calls "
          f"in {resumed:.0f} s ({result.engine_seconds:.0f} s in the engine), {took:.0f} s in all")

    assert not result.stopped and result.text.strip()
    assert result.cached_calls == 11 and counting.calls == result.engine_calls == calls - 11, \
        "the re-run only does what is missing"
    assert [level.kind for level in levels][0] == MAP and levels[-1].kind == FINAL
    assert all(level.kind == REDUCE for level in levels[1:-1]) and len(levels) >= 3, "several levels"
    count = token_counter(engine)
    pieces = [chunk.text for chunk in store.chunks(document_id)]
    assert [text for group in levels[0].groups for text in group] == pieces, "every part of the document is read"
    assert all(count("\n\n".join(group)) < engine.n_ctx - 100 for group in levels[0].groups)
    for lower, upper in zip(levels, levels[1:]):
        assert len(lower.outputs) == len(lower.groups) and all(text.strip() for text in lower.outputs)
        assert [text for group in upper.groups for text in group] == lower.outputs, \
            "every partial summary reaches the next level, once and in order"
    assert levels[-1].outputs == [result.text]
    done = [u.progress.done for u in updates]
    assert done == sorted(done) and updates[-1].progress.done == updates[-1].progress.total == calls
    assert updates[-1].tokens_read == updates[-1].tokens_total > 25 * engine.n_ctx
    assert any(u.eta_s for u in updates[:-1])
    assert [s["levels"] for s in store.summaries(document_id)] == [len(levels)]


def test_progress_moves_inside_the_first_call_of_a_document_larger_than_the_context(tmp_path, store, small_engine):
    """The first map call's prompt is read in n_batch steps, each one an update within moments of
    the start that moves the document's count (the table's); then the tokens written count up and a
    measured ETA appears. Stopped early."""
    path = tmp_path / "chronicle.md"
    path.write_text(long_markdown(2_000), encoding="utf-8")
    document_id, _ = store.add(read_document(path))
    cancel, updates = CancelToken(), []
    for update in summarize(small_engine, store, document_id, SummaryOptions("short"), GREEDY, cancel):
        updates.append(update)
        if update.call is not None and update.call.phase == WRITING and update.call.done == 6:
            cancel.cancel()  # Stop, six tokens into the first partial summary
    calls = [(u.call, None) for u in updates if u.call is not None]
    first = calls[0][0]
    assert (first.phase, first.done) == (READING, 0), "the first sign of the call: its prompt about to be read"
    reading = [call for call, _ in calls if call.phase == READING]
    assert reading[0].done == 0 and reading[-1].done == reading[-1].total > 2 * 256, "a prompt of several batches"
    assert len({call.done for call in reading}) >= 3, "each n_batch step is shown"
    assert [call.done for call, _ in calls if call.phase == WRITING][:6] == [1, 2, 3, 4, 5, 6]
    read = [u.tokens_read for u in updates if u.call is not None and u.call.phase == READING]
    assert read == sorted(read) and len(set(read)) >= 3, "the document's count moves as the prompt is read"
    lines = [summary_line(u, "en") for u in updates]
    stored = f"{store.document(document_id)['tokens']:,}"
    assert lines[0].startswith("reading the document · step 1 of ") and \
        f"0 / {stored} tokens of the document (Tekken) · now reading the prompt" in lines[0], lines[0]
    assert any("now writing: 6 tokens (at most " in line and " left" in line for line in lines), lines[-3:]
    assert updates[-1].result.stopped


def test_cli_summarize_json(tmp_path, home):
    path = make_pdf(tmp_path / "lettre.pdf", [FRENCH * 3], title="Lettre")
    result = run_cli("summarize", str(path), "--model", "smollm2", "--length", "short", "--temperature", "0",
                     "--ctx", "2048", "--json", home=home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["summary"].strip() and out["chunks"] == 1 and out["levels"] == 1
    assert out["document_tokens"] > 50 and out["language"] == "fr" and out["pages"] == 1
    assert out["generated_tokens"] > 0 and out["resumed_tokens"] == 0, "the engine's own count of what it wrote"
    assert "lettre.pdf · done: " in result.stderr and " calls in " in result.stderr, "a progress line on stderr"
    again = json.loads(run_cli("summarize", str(path), "--model", "smollm2", "--length", "short",
                               "--temperature", "0", "--ctx", "2048", "--json", home=home).stdout)
    assert again["document_id"] == out["document_id"] and again["engine_calls"] == 0 and again["generated_tokens"] == 0


def test_chat_context_is_the_whole_document_when_it_fits(tmp_path, store):
    document_id, _ = store.add(read_document(make_pdf(tmp_path / "a.pdf", [ENGLISH * 3])))
    context = context_for_chat(store, document_id, "What about the library?", 4000)
    assert context.whole and "town council of Leeds" in context.text and "whole" in str(context.note)


def test_chat_context_is_summary_plus_relevant_passages_when_too_long(tmp_path, store):
    path = tmp_path / "chronicle.md"
    path.write_text(long_markdown(6000) + "\n## Chapter 99: Zeppelins\n\nIn 1911 a zeppelin landed in Harlow.\n\n"
                    + CHINESE * 3 + "\n", encoding="utf-8")
    document_id, _ = store.add(read_document(path))
    context = context_for_chat(store, document_id, "When did the zeppelin land?", 1000)
    assert not context.whole and "zeppelin landed in Harlow" in context.text
    assert "no summary yet" in str(context.note) and "passages" in str(context.note)

    store.save_summary(document_id, "m.gguf", {"length": "short"}, "Eight towns grow over two centuries.", 3, 2)
    context = context_for_chat(store, document_id, "图书馆什么时候开放？", 1000)
    assert context.text.index("Eight towns grow") < context.text.index("图书馆周日也将开放")
    assert "its summary" in str(context.note) and "1,000 tokens" in str(context.note)
    from app.nemo.tekken import Tekken

    assert Tekken.default().count(context.text) <= 1000


class WidestEngine(CountingEngine):
    """The real engine, recording how many of its completions were under way at once."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.under_way = self.most = 0
        self.lock = threading.Lock()

    def complete(self, prompt_ids, sampling, cancel, progress=None, decoder=None):
        completion = self.engine.complete(prompt_ids, sampling, cancel, progress, decoder)
        engine = self

        class Counted:
            stats = property(lambda _: completion.stats)
            token_ids = property(lambda _: completion.token_ids)

            def __iter__(self):
                with engine.lock:
                    engine.under_way += 1
                    engine.most = max(engine.most, engine.under_way)
                try:
                    yield from completion
                finally:
                    with engine.lock:
                        engine.under_way -= 1

        return Counted()


def test_a_level_s_calls_run_side_by_side_on_parallel_sequences_in_order_and_cached(tmp_path, model_path):
    four = LlamaEngine()
    four.load(LoadOptions(str(model_path), n_ctx=1024, n_batch=256, parallel=4, n_threads=1))
    try:
        path = tmp_path / "chronicle.md"
        path.write_text(long_markdown(1400), encoding="utf-8")
        store = DocumentStore(History(tmp_path / "side.db"))
        document_id, _ = store.add(read_document(path))
        options, sampling = SummaryOptions("short"), SamplingOptions(temperature=0.0, max_tokens=48)
        widest = WidestEngine(four)
        updates = list(summarize(widest, store, document_id, options, sampling))
        side = updates[-1].result
        assert len(side.levels[0].groups) >= 4 and widest.most >= 2, "the map calls ran side by side"
        assert any(" calls at once" in summary_line(u, "en") for u in updates if u.at_once > 1), "the line says so"
        assert not side.stopped and side.text and all(all(o.strip() for o in level.outputs) for level in side.levels)
        again = run_to_end(summarize(CountingEngine(four), store, document_id, options, sampling))
        assert (again.engine_calls, again.cached_calls) == (0, side.engine_calls), "every call was kept"
        assert [level.outputs for level in again.levels] == [level.outputs for level in side.levels], \
            "each output in its group's place"
    finally:
        four.unload()


class RecordingEngine(CountingEngine):
    """The real engine, keeping each completion it made with its prompt (to read the engine's own stats)."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.made: list[tuple[list[int], object]] = []

    def complete(self, prompt_ids, sampling, cancel, progress=None, decoder=None):
        completion = self.engine.complete(prompt_ids, sampling, cancel, progress, decoder)
        self.made.append((list(prompt_ids), completion))
        return completion


def stopped_at(updates, cancel, stop_here):
    """Run a summary, pressing Stop at the first update `stop_here` accepts; all its updates."""
    seen = []
    for update in updates:
        seen.append(update)
        if update.result is None and stop_here(update):
            cancel.cancel()
    return seen


def writing(update, tokens: int, stage: str) -> bool:
    return update.progress.what == stage and update.call is not None and update.call.phase == WRITING \
        and update.call.done >= tokens


@pytest.mark.timeout(900)
def test_resume_a_call_stopped_while_writing_goes_on_from_its_written_tokens(tmp_path, store, small_engine):
    """Resume: Stop 6 tokens into the first map call, resume and Stop 8 tokens into the final reduce
    call, resume again: each stopped call goes on from the tokens it wrote (they end its prompt and
    their K/V is reused) and the engine never writes them again. The progress line counts the
    document read while a call writes, in the document's one token count (the table's, Tekken)."""
    path = tmp_path / "chronicle.md"
    path.write_text(long_markdown(1_100), encoding="utf-8")
    document_id, _ = store.add(read_document(path))
    stored = store.document(document_id)["tokens"]
    options, run = SummaryOptions("short"), lambda engine, cancel: summarize(
        engine, store, document_id, options, GREEDY, cancel, partial_tokens=32)

    first, cancel = RecordingEngine(small_engine), CancelToken()
    updates = stopped_at(run(first, cancel), cancel, lambda u: writing(u, 6, "reading the document"))
    assert updates[-1].result.stopped and len(first.made) == 1
    map_prompt, map_stopped = first.made[0]
    map_written = map_stopped.token_ids
    assert len(map_written) >= 6 and map_stopped.stats.completion_tokens == len(map_written)
    share = max(u.tokens_read for u in updates)
    assert 0 < share < stored and all(u.tokens_total == stored for u in updates), \
        "while the first call writes, the line counts the part of the document it read"
    assert any(f"{share:,} / {stored:,} tokens of the document (Tekken)" in summary_line(u, "en") for u in updates)

    second, cancel = RecordingEngine(small_engine), CancelToken()
    updates = stopped_at(run(second, cancel), cancel, lambda u: writing(u, 8, "writing the summary"))
    stopped = updates[-1].result
    assert stopped.stopped and stopped.levels[-1].kind == FINAL, "stopped in the final reduce call"
    map_prompt_again, map_resumed = second.made[0]
    assert map_prompt_again == map_prompt + map_written, "the map call goes on from its written tokens"
    assert map_resumed.stats.cached_tokens >= len(map_prompt_again) - 1, "their K/V is reused"
    assert stopped.resumed_tokens == len(map_written)
    final_prompt, final_stopped = second.made[-1]
    final_written = final_stopped.token_ids
    partial_text = next(u.text for u in reversed(updates) if u.text)
    assert len(final_written) >= 8 and partial_text.strip()
    assert all(u.tokens_read == stored for u in updates if u.progress.what == "writing the summary")

    third = RecordingEngine(small_engine)
    updates = list(run(third, CancelToken()))
    result = updates[-1].result
    assert not result.stopped and result.engine_calls == 1 and len(third.made) == 1, "only the final call is left"
    prompt, final = third.made[0]
    assert prompt == final_prompt + final_written and final.stats.cached_tokens >= len(prompt) - 1
    assert final.stats.completion_tokens == len(final.token_ids) == result.generated_tokens, \
        "the engine wrote only the rest of the call"
    assert result.resumed_tokens == len(final_written)
    assert result.text.startswith(partial_text.strip()) and len(result.text) > len(partial_text.strip())
    whole = small_engine.detokenize(final_written + final.token_ids).strip()
    assert result.text == whole, "the summary is the written tokens and the rest, once each"
    partials = store.db.execute("SELECT count(*) FROM cached_results WHERE key LIKE ?", [f"%{PARTIAL}"]).fetchone()[0]
    assert partials == 0, "a finished call's partial output is not kept"
    first_written = next(u.call.done for u in updates if u.call is not None and u.call.phase == WRITING)
    assert first_written > len(final_written), "the call's count of written tokens goes on too"
    print(f"\nmap call: {len(map_written)} tokens kept, {map_resumed.stats.completion_tokens} more written; "
          f"final call: {len(final_written)} kept, {final.stats.completion_tokens} more written, "
          f"{final.stats.cached_tokens} of {final.stats.prompt_tokens} prompt tokens reused")
