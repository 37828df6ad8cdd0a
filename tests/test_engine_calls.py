"""The cached engine call with the real SmolLM2: where a call is while it runs, the ETA from the
rates measured so far (also for an engine that does not report its prompt reading), and a call
closed half way that stops at once and gives the model back."""

from __future__ import annotations


import pytest

from app.base.jobs import CancelToken
from app.history import History
from app.runtime import SamplingOptions
from app.services.engine_calls import READING, WRITING, CachedCalls
from app.storage.document_store import DocumentStore

ASK = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture()
def store(tmp_path):
    history = History(tmp_path / "nemo-chat.db")
    yield DocumentStore(history)
    history.close()


class SilentEngine:
    """The real engine, without the progress reports (as an engine that cannot report reading)."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def complete(self, prompt_ids, sampling, cancel, progress=None, decoder=None):
        return self.engine.complete(prompt_ids, sampling, cancel, decoder=decoder)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def run(generator):
    """Drain a generator; (what it yielded, what it returned)."""
    items = []
    while True:
        try:
            items.append(next(generator))
        except StopIteration as end:
            return items, end.value


def test_a_call_reports_reading_then_writing_and_the_eta_uses_the_measured_rates(engine, store):
    calls = CachedCalls(engine, store, "test", "source")
    sampling = SamplingOptions(temperature=0, max_tokens=12)
    seen, reply = run(calls.generate(ASK, sampling, CancelToken(), lambda text: (calls.call, text)))
    phases = [call.phase for call, _ in seen]
    assert phases[0] == READING and WRITING in phases and phases == sorted(phases)
    assert seen[-1][1] == reply.text and calls.call is None, "between calls there is no call under way"
    assert calls.eta_s(0) == 0 and calls.eta_s(3) > 0, "three more calls like this one take time"
    per_call = calls.eta_s(1)
    assert calls.eta_s(4) == pytest.approx(4 * per_call)
    assert 0 < reply.written <= 12 and reply.written == calls.finished.written
    read, written = calls.finished.read, calls.finished.written  # the tokens of one call like this one
    assert calls.eta_s(4, read_after=read, write_after=written) == pytest.approx(per_call), "the job knows better"
    assert calls.eta_s(4, read_after=3 * read, write_after=3 * written) == pytest.approx(3 * per_call)


def test_an_engine_that_does_not_report_reading_still_gets_an_eta(engine, store):
    calls = CachedCalls(SilentEngine(engine), store, "test", "source")
    seen, _ = run(calls.generate(ASK, SamplingOptions(temperature=0, max_tokens=8), CancelToken(),
                                 lambda text: calls.call))
    assert {call.phase for call in seen} == {WRITING}
    assert calls.eta_s(2) > 0, "the wait for the first token is taken as the prompt's reading"


def test_a_call_closed_half_way_stops_and_gives_the_model_back(engine, store):
    calls, cancel = CachedCalls(engine, store, "test", "source"), CancelToken()
    steps = calls.generate(ASK, SamplingOptions(temperature=0, max_tokens=400), cancel, lambda text: text)
    while not next(steps):
        pass  # until the first text
    steps.close()
    assert cancel.cancelled
    after = engine.complete(engine.tokenize("Hi"), SamplingOptions(max_tokens=2))
    after.text()
    assert after.stats.completion_tokens >= 1 and after.stats.stop_reason in ("eos", "length"), "the model is free"
