"""Engine calls whose results are kept: one cache lookup, one streamed call, counted and timed.

Summaries, translations and questions asked of documents are made of many calls; each call's
result is kept in the document store's cache under a hash of what went into it (model, prompt
version, text, options), so a re-run after a Stop, a crash or a restart does no finished call twice
(`text` looks a call up, else makes it and keeps it).

A call shows where it is while it runs: waiting for its turn at the model, reading its prompt
(tokens read of tokens to read) or writing (tokens written). The engine reports the first two
through its progress callback, from inside its iteration, so the call is iterated in a helper
thread and every report becomes an update the job yields. The rates measured over the job's calls
so far give its ETA. Calls share only these counters and the list of calls under way (`live`): a
level's calls are independent, and run side by side on an engine with parallel sequences.

A call stopped while writing keeps the token ids it wrote (under its key + PARTIAL); the next run of
that call goes on from them instead of starting again: they end its prompt, as the start of the
assistant's turn, so the engine reuses their K/V from its prefix cache and writes only the rest.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from dataclasses import dataclass, replace
from collections.abc import Callable, Iterator
from typing import TypeVar

from app.base.errors import Cancelled
from app.base.jobs import WAITING, CancelToken, Progress
from app.engine.chat_format import chat_format_for
from app.runtime import Engine, SamplingOptions
from app.storage.document_store import DocumentStore

READING, WRITING = "reading", "writing"  # CallProgress.phase, besides WAITING
PARTIAL = ":partial"  # added to a call's cache key: the token ids a stopped call had written
Update = TypeVar("Update")
_END = object()  # the helper thread's last event


@dataclass(frozen=True)
class Reply:
    text: str
    cut: bool  # stopped by its token budget, not by the model
    written: int = 0  # tokens written


@dataclass(frozen=True)
class CallProgress:
    """Where the call under way is: WAITING (`ahead` requests first), READING (`done` of `total`
    prompt tokens) or WRITING (`done` tokens written, at most `total`); `eta_s`: this phase's rest.
    `source`: tokens of the job's source (its document) the call reads; the job counts those, in the
    source's own count, so the prompt's count (another tokenizer's, with the instructions) is not shown.
    `resumed`: of the tokens `done` while WRITING, those an earlier, stopped run of the call wrote."""

    phase: str
    done: int = 0
    total: int = 0
    ahead: int = 0
    eta_s: float | None = None
    source: int = 0
    resumed: int = 0


def duration_parts(seconds: float) -> tuple[int, int, int]:
    """(hours, minutes, seconds) of a rounded duration."""
    minutes, seconds = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return hours, minutes, seconds


class _Meter:
    """Tokens read and written by a job's engine calls, and the seconds they took (writing is timed
    from each call's first token, as the engine's tokens/s is)."""

    def __init__(self) -> None:
        self.calls = self.read = self.written = self.timed = 0
        self.read_s = self.write_s = 0.0

    def add(self, other: _Meter) -> None:
        self.calls += other.calls
        self.read, self.read_s = self.read + other.read, self.read_s + other.read_s
        self.written, self.timed, self.write_s = (self.written + other.written, self.timed + other.timed,
                                                  self.write_s + other.write_s)


class _Call(_Meter):
    """The live state of one call, moved by the engine's reports and the text it writes."""

    def __init__(self, prompt_tokens: int, max_tokens: int, resumed: int = 0, source: int = 0) -> None:
        super().__init__()
        self.calls, self.max_tokens, self.started = 1, max_tokens, time.perf_counter()
        self.resumed = resumed  # tokens written by an earlier, stopped run of this call
        self.source = source  # tokens of the job's source (its document) this call reads
        self.progress = CallProgress(READING, 0, prompt_tokens, source=source)
        self.to_read = prompt_tokens
        self._read_from = self._first_token_at = None

    @property
    def source_read(self) -> int:
        """Of `source`, what the call has read: in step with its prompt, all of it once it writes."""
        p = self.progress
        if p.phase == WRITING:
            return self.source
        return self.source * p.done // p.total if p.phase == READING and p.total else 0

    def moved(self, report: Progress, now: float) -> None:
        if report.what == WAITING:
            self.progress = CallProgress(WAITING, ahead=report.ahead)
            return
        self._read_from = self._read_from or now
        self.to_read, self.read, self.read_s = report.total, report.done, now - self._read_from
        eta = (report.total - report.done) / (self.read / self.read_s) if self.read and self.read_s else None
        self.progress = CallProgress(READING, report.done, report.total, eta_s=eta, source=self.source)

    def wrote(self, now: float) -> None:
        if self._first_token_at is None and self._read_from is None:  # an engine that does not report reading:
            self.read, self.read_s = self.to_read, now - self.started  # the wait for the first token is the reading
        self.written += 1
        self._first_token_at = self._first_token_at or now
        self.timed, self.write_s = self.written - 1, now - self._first_token_at
        self.progress = CallProgress(WRITING, self.resumed + self.written, self.max_tokens, resumed=self.resumed)


class CachedCalls:
    """The calls of one job: `lookup` a key, else `generate` and `keep` the result."""

    def __init__(self, engine: Engine, store: DocumentStore, kind: str, source: str) -> None:
        self.engine, self.store, self.kind, self.source = engine, store, kind, source
        self.format = chat_format_for(engine)
        self.engine_calls = self.cached_calls = 0
        self.generated_tokens = 0  # tokens the engine wrote for this job (its completions' stats)
        self.resumed_tokens = 0  # tokens of stopped calls' partial replies that were not written again
        self.engine_seconds = 0.0
        self.finished = _Meter()  # what the job's finished engine calls read and wrote
        self.live: list[_Call] = []  # the calls under way (several when they run side by side)
        self._counting = threading.Lock()

    def key(self, payload: dict) -> str:
        """The cache key of a call described by `payload` (with the job's kind and the model)."""
        return hashlib.sha256(json.dumps({"kind": self.kind, "model": self.engine.model_key, **payload},
                                         ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    def lookup(self, payload: dict) -> tuple[str, str | None]:
        """The cache key of a call described by `payload`, and its kept result (None if not yet made)."""
        key = self.key(payload)
        value = self.store.cached(key)
        if value is not None:
            with self._counting:
                self.cached_calls += 1
        return key, value

    def keep(self, key: str, value: str, source: str | None = None) -> None:
        """Keep a call's result, made from the job's document (or from the one whose SHA-256 is `source`)."""
        self.store.put_cached(key, self.kind, value, source=self.source if source is None else source)

    def text(self, payload: dict, messages: list[dict], sampling: SamplingOptions, cancel: CancelToken,
             show: Callable[[str], Update], source: int = 0, kept_from: str | None = None) -> Iterator[Update]:
        """The stripped text of the call `payload` describes: its kept result, else `generate`d
        (resumable under its key) and kept. See `generate` for `show`, `source` and `kept_from`."""
        key, output = self.lookup(payload)
        if output is None:
            reply = yield from self.generate(messages, sampling, cancel, show, key, source, kept_from)
            output = reply.text.strip()
            self.keep(key, output, kept_from)
        return output

    def generate(self, messages: list[dict], sampling: SamplingOptions, cancel: CancelToken,
                 show: Callable[[str], Update], key: str | None = None, source: int = 0,
                 kept_from: str | None = None) -> Iterator[Update]:
        """Run one call and return its `Reply`, yielding `show(reply so far)` whenever the call moves
        (turn, prompt read, token written). Raises Cancelled on Stop; closing it early stops the call.
        With `key` (the call's cache key) a Stop while writing keeps what was written, and the next
        call with that key goes on from there (not on a server that sends text instead of ids).
        `source`: tokens of the job's source the call reads (see `source_read`); `kept_from`: the
        SHA-256 of the document the call reads, when it is not the job's (see `keep`)."""
        cancel.raise_if_cancelled()
        started = time.perf_counter()
        prompt, decoder = self.format.encode(messages), self.format.decoder()
        resumable = key is not None and decoder is not None
        written = self._written(key, sampling.max_tokens) if resumable else []
        text = "".join(decoder.feed(token) for token in written)
        events: queue.SimpleQueue = queue.SimpleQueue()
        completion = self.engine.complete([*prompt, *written] if written else prompt,
                                          replace(sampling, max_tokens=sampling.max_tokens - len(written)), cancel,
                                          lambda report: events.put((time.perf_counter(), report)), decoder)
        call = _Call(len(prompt) + len(written), sampling.max_tokens, len(written), source)
        with self._counting:
            self.live.append(call)
        worker = threading.Thread(target=_iterate, args=(completion, events), daemon=True, name="nemo-chat-call")
        worker.start()
        try:
            while (event := events.get()) is not _END:
                if isinstance(event, BaseException):
                    raise event
                at, what = event  # when the engine reported it, and what
                if isinstance(what, str):
                    text += what
                    call.wrote(at)
                else:
                    call.moved(what, at)
                yield show(text)
        finally:
            if worker.is_alive():  # closed early: the call must not go on holding the model
                cancel.cancel()
                worker.join()
            with self._counting:
                self.live.remove(call)
                self.finished.add(call)
                self.generated_tokens += completion.stats.completion_tokens
            if resumable and completion.stats.stop_reason not in ("eos", "length") and completion.token_ids:
                # stopped while writing: keep what it wrote
                self.keep(key + PARTIAL, json.dumps([*written, *completion.token_ids]), kept_from)
        with self._counting:
            self.engine_calls += 1
            self.engine_seconds += time.perf_counter() - started
            self.resumed_tokens += len(written)
        if completion.stats.stop_reason == "cancelled":
            raise Cancelled()
        if written:
            self.store.forget_cached(key + PARTIAL)
        return Reply(text, completion.stats.stop_reason == "length", call.resumed + call.written)

    def _written(self, key: str, max_tokens: int) -> list[int]:
        """The token ids a stopped run of the call `key` wrote (fewer than `max_tokens`), if any."""
        kept = self.store.cached(key + PARTIAL)
        return json.loads(kept)[: max_tokens - 1] if kept is not None else []

    def source_read(self) -> int:
        """Tokens of the job's source read by the calls under way."""
        return sum(call.source_read for call in list(self.live))

    @property
    def call(self) -> CallProgress | None:
        """Where the (first) call under way is (None between calls)."""
        current = self.current
        return current.progress if current is not None else None

    @property
    def current(self) -> _Call | None:
        """The first call under way; the ETA counts the others as calls still to make."""
        live = self.live
        return live[0] if live else None

    def eta_s(self, calls_after: float, read_after: float | None = None, write_after: float | None = None) -> float | None:
        """Seconds left for the call under way and `calls_after` more like the job's calls so far (or
        that will read `read_after` and write `write_after` tokens, where the job knows better), at the
        rates measured over this job; None until both reading and writing have been measured."""
        done, current = self.finished, self.current
        measured = _Meter()
        measured.add(done)
        if current is not None:
            measured.add(current)
        if not (measured.read and measured.read_s and measured.timed and measured.write_s):
            return None
        seen = done.calls + (current is not None)
        prompt = (done.read + (current.to_read if current else 0)) / seen
        written = done.written / done.calls if done.calls else current.max_tokens
        read_left = calls_after * prompt if read_after is None else read_after
        write_left = calls_after * written if write_after is None else write_after
        if current is not None:
            read_left += current.to_read - current.read
            write_left += max(0, min(written, current.max_tokens) - current.resumed - current.written)
        return read_left / (measured.read / measured.read_s) + write_left / (measured.timed / measured.write_s)

    def encoded_length(self, messages: list[dict]) -> int:
        return len(self.format.encode(messages))


def _iterate(completion, events: queue.SimpleQueue) -> None:
    """The helper thread: the call's text deltas with their time, or its error, then _END."""
    try:
        for delta in completion:
            events.put((time.perf_counter(), delta))
    except BaseException as exc:  # handed to the job's thread, which raises it
        events.put(exc)
    finally:
        events.put(_END)
