"""Parallel sequences in the embedded engine, on the real llama.cpp runtime with SmolLM2: several
completions iterated from several threads share one context and one `llama_decode` per step."""

from __future__ import annotations

import threading
import time

from dataclasses import replace

import pytest

from app.base.jobs import WAITING, CancelToken
from app.engine.chat_format import TemplateChatFormat
from app.history import History
from app.engine.batching import GAP_COST, Slot, busy_runs, choose_slot
from app.engine.llama import LlamaEngine
from app.runtime import LoadOptions, SamplingOptions
from app.services.translate import TranslateOptions, TranslationJob, TranslationRequest, lanes, parse_numbered
from app.storage.document_store import DocumentStore

GREEDY = SamplingOptions(temperature=0.0, max_tokens=32)
THREADS = 1  # llama.cpp threads: this machine's two cores are shared, and two spinning threads then stall
QUESTIONS = ["Name three colours of the rainbow.", "What is the capital of France?",
             "Write a haiku about the sea.", "Explain what a lighthouse does."]


@pytest.fixture(scope="module")
def four(model_path):
    """An engine running four sequences at once, each with its own 1,024-token context."""
    engine = LlamaEngine()
    engine.load(LoadOptions(str(model_path), n_ctx=1024, n_batch=256, parallel=4, n_threads=THREADS))
    yield engine
    engine.unload()


def ask(engine, *turns: str) -> list[int]:
    roles = ["user", "assistant"]
    return TemplateChatFormat(engine).encode([{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)])


class Running:
    """Completions started together in threads; each records when its tokens arrive."""

    def __init__(self, engine, jobs: dict) -> None:
        self.completions = {name: engine.complete(ids, sampling, cancel, progress)
                            for name, (ids, sampling, cancel, progress) in jobs.items()}
        self.arrivals = {name: [] for name in jobs}
        self.texts: dict[str, str] = {}
        self.threads = [threading.Thread(target=self._run, args=(name,)) for name in jobs]

    def _run(self, name: str) -> None:
        parts = []
        for delta in self.completions[name]:
            self.arrivals[name].append(time.perf_counter())
            parts.append(delta)
        self.texts[name] = "".join(parts)

    def start(self) -> Running:
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> Running:
        for thread in self.threads:
            thread.join(300)
        return self


def job(ids, sampling=GREEDY, cancel=None, progress=None):
    return ids, sampling, cancel or CancelToken(), progress or (lambda p: None)


def test_four_sequences_at_once_give_the_text_each_gives_alone(four):
    assert four.parallel == 4 and four.n_ctx == 1024
    prompts = {q: ask(four, q) for q in QUESTIONS}
    alone = {q: four.complete(ids, GREEDY).text() for q, ids in prompts.items()}
    together = Running(four, {q: job(ids) for q, ids in prompts.items()}).start().join()
    assert together.texts == alone
    assert all(len(text) > 20 for text in alone.values())
    last_start = max(times[0] for times in together.arrivals.values())
    first_end = min(times[-1] for times in together.arrivals.values())
    assert last_start < first_end, "all four streamed at the same time"


def test_each_sequence_has_the_whole_context_it_was_given(four):
    """The context grows with the number of sequences: two 700-token prompts fit in 1,024 each."""
    sea = " ".join(f"Sentence {i} is about the sea." for i in range(80))
    prompts = {n: ask(four, f"{sea} Question {n}: which sentence is the last?") for n in "ab"}
    assert all(700 <= len(ids) < 1000 for ids in prompts.values())
    together = Running(four, {n: job(ids, SamplingOptions(temperature=0.0, max_tokens=4))
                              for n, ids in prompts.items()}).start().join()
    assert set(together.texts) == {"a", "b"}
    assert all(c.stats.prompt_tokens > 700 and c.stats.completion_tokens > 0 for c in together.completions.values())


def test_cancelling_one_sequence_leaves_the_others_running(four):
    prompts = {q: ask(four, q) for q in QUESTIONS[:3]}
    alone = {q: four.complete(ids, GREEDY).text() for q, ids in prompts.items()}
    stop = CancelToken()
    victim = QUESTIONS[0]
    jobs = {q: job(ids, cancel=stop if q == victim else None) for q, ids in prompts.items()}
    together = Running(four, jobs)
    threading.Thread(target=lambda: (wait_for(lambda: len(together.arrivals[victim]) >= 3), stop.cancel())).start()
    together.start().join()
    cancelled = together.completions[victim]
    assert cancelled.stats.stop_reason == "cancelled"
    assert 3 <= cancelled.stats.completion_tokens < GREEDY.max_tokens
    for q in QUESTIONS[1:3]:
        assert together.texts[q] == alone[q]
        assert together.completions[q].stats.stop_reason in ("eos", "length")


def test_a_sequence_finishing_early_lets_a_queued_one_start(model_path):
    engine = LlamaEngine()
    engine.load(LoadOptions(str(model_path), n_ctx=1024, n_batch=256, parallel=2, n_threads=THREADS))
    try:
        story = ask(engine, "Write a long story about a lighthouse keeper.")
        long = Running(engine, {"long": job(story, SamplingOptions(temperature=0.0, max_tokens=120))}).start()
        short = iter(engine.complete(ask(engine, QUESTIONS[1]), SamplingOptions(temperature=0.0, max_tokens=3)))
        next(short)  # both slots are taken now
        waits = []
        queued = Running(engine, {"queued": job(ask(engine, QUESTIONS[2]), SamplingOptions(temperature=0.0, max_tokens=8),
                                                progress=lambda p: waits.append((p.what, p.ahead)))}).start()
        wait_for(lambda: waits)
        assert waits[0] == (WAITING, 1) and not queued.arrivals["queued"]
        list(short)  # the short one ends: its slot goes to the queued one
        queued.join()
        long.join()
        assert queued.completions["queued"].stats.completion_tokens == 8
        assert long.completions["long"].stats.completion_tokens == 120
        assert queued.arrivals["queued"][-1] < long.arrivals["long"][-1], "the queued one ran beside the long one"
    finally:
        engine.unload()


def test_a_waiting_request_learns_it_waits_and_can_be_stopped(four):
    ids = ask(four, QUESTIONS[0])
    held = [iter(four.complete(ids, GREEDY)) for _ in range(4)]
    for stream in held:
        next(stream)  # four open streams hold every sequence slot
    try:
        cancel, seen = CancelToken(), []

        def progress(p):
            seen.append((p.what, p.ahead))
            cancel.cancel()

        waiting = four.complete(ids, GREEDY, cancel, progress)
        assert list(waiting) == [] and waiting.stats.stop_reason == "cancelled"
        assert seen == [(WAITING, 1)]
    finally:
        for stream in held:
            stream.close()
    assert four.complete(ids, GREEDY).text(), "closed streams give their slots back"


def test_the_chat_sequence_reuses_its_prefix_while_other_calls_run(four):
    """The conversation is longer than GAP_COST tokens: a shorter cache is worth less than keeping
    the busy slots side by side, and other calls may take its slot."""
    trip = " ".join(f"On day {n} we stay in {city}." for n, city in enumerate(
        ["Lyon", "Bordeaux", "Strasbourg", "Nantes", "Lille", "Nice", "Dijon", "Rennes"] * 4, 1))
    question = (f"I am planning a trip through France next spring. {trip} "
                "I would like to spend a few days in the capital too. What is the capital of France?")
    first = ask(four, question)
    assert len(first) > GAP_COST
    reply = four.complete(first, GREEDY)
    answer = reply.text()
    others = Running(four, {q: job(ask(four, q), SamplingOptions(temperature=0.0, max_tokens=8))
                            for q in QUESTIONS[1:]}).start().join()
    assert len(others.texts) == 3
    follow = four.complete(ask(four, question, answer, "And of Italy?"), GREEDY)
    follow.text()
    assert follow.stats.cached_tokens >= len(first)
    assert follow.stats.evaluated_tokens < follow.stats.prompt_tokens - len(first)


def test_per_sequence_seeds_repeat_at_any_temperature(four):
    sampling = SamplingOptions(temperature=0.9, max_tokens=24, seed=1234)
    ids = ask(four, QUESTIONS[2])
    alone = four.complete(ids, sampling).text()
    together = Running(four, {n: job(ids, sampling) for n in "abc"}).start().join()
    assert set(together.texts.values()) == {alone}


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_lanes_are_runs_of_consecutive_segments_as_even_as_can_be():
    assert lanes(8, 4) == [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    assert lanes(3, 8) == [range(0, 1), range(1, 2), range(2, 3)], "never more lanes than segments"
    assert lanes(5, 1) == [range(0, 5)]
    for n, width in [(7, 3), (10, 4), (1, 4)]:
        runs = lanes(n, width)
        assert [i for run in runs for i in run] == list(range(n))
        assert max(map(len, runs)) - min(map(len, runs)) <= 1


def test_a_translation_runs_its_lanes_side_by_side_each_in_order_and_resumes(four, tmp_path):
    """Eight one-paragraph segments on four sequences: four lanes of two run at once; within a lane
    the second segment carries the first one's translation; each reply lands in its own segment (the
    reply recorded for a segment's own request is what the segment holds); after a Stop, a second
    run redoes no finished segment. A reply is not compared with the same request asked alone: how
    the lanes' steps fall (which sequences share a llama.cpp pass, how a prompt is cut) changes the
    arithmetic, and the tiny model's greedy choice flipped once in the full suite."""
    from test_summarize import WidestEngine

    text = "\n\n".join(f"Room {n} is open." for n in range(101, 909, 101))
    store = DocumentStore(History(tmp_path / "lanes.db"))
    request, options = TranslationRequest(text, "fr", "en"), TranslateOptions(temperature=0, segment_tokens=8)
    widest = WidestEngine(four)
    job = TranslationJob(widest, store, request, options)
    assert len(job.segments) == 8 and job.lanes == lanes(8, 4)
    asked = {}  # the request's text -> (its messages, sampling, reply)
    generate = job.calls.generate

    def recorded(messages, sampling, cancel, show, *rest):
        reply = yield from generate(messages, sampling, cancel, show, *rest)
        asked[messages[-1]["content"]] = messages, sampling, reply.text
        return reply

    job.calls.generate = recorded
    for _ in job.run():
        pass
    assert widest.most >= 2, "the lanes ran side by side"
    assert not job.result.stopped and job.result.engine_calls >= 8 and None not in job.outputs
    for index, segment in enumerate(job.segments):
        messages, sampling, reply = asked[f"[1] {segment[0].text}"]
        assert job.outputs[index] == parse_numbered(reply, 1), "its own reply in its own place"
        if index in job.lane_starts:
            assert len(messages) == 2, "a lane's first segment goes without context"
        else:
            assert messages[1]["content"] == f"[1] {job.segments[index - 1][0].text}", "the lane's previous segment"
    assert len({tuple(output) for output in job.outputs}) >= 4, "the segments got different replies"

    stopping = TranslationJob(four, store, replace(request, text=text + "\n\nRoom 909 is open."), options)
    cancel = CancelToken()
    for update in stopping.run(cancel):
        if update.segment is not None and update.partial:
            cancel.cancel()  # Stop while the new ninth segment is written
    assert stopping.result.stopped and stopping.result.cached_segments >= 7, "the finished segments came from the cache"


def test_a_new_sequence_takes_a_slot_next_to_the_busy_ones_unless_another_holds_its_prompt():
    """llama.cpp decodes in one pass only consecutive sequence ids: each gap between busy slots
    costs a pass at every step, so a slot beside the busy ones wins over an idle cache."""
    slots = [Slot(i, held=[9] * 40) for i in range(6)]
    slots[2].busy = slots[3].busy = True
    slots[0].held = []  # empty, but away from the busy ones
    assert busy_runs([s.busy for s in slots]) == 1 and busy_runs([True, False, True]) == 2
    assert choose_slot(slots, [1, 2, 3]).seq_id in (1, 4)
    long_prompt = list(range(GAP_COST + 100))
    slots[5].held = long_prompt[:GAP_COST + 50]  # a prefix worth more than a gap
    assert choose_slot(slots, long_prompt).seq_id == 5
    slots[5].held = long_prompt[:10]
    assert choose_slot(slots, long_prompt).seq_id in (1, 4)
    for slot in slots:
        slot.busy = False
    assert choose_slot(slots, [7]).seq_id == 0  # none busy: the one whose cache is the smallest loss
