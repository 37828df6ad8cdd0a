"""Engine calls whose results are kept: one cache lookup, one streamed call, counted.

Summaries and translations are made of many calls; each call's result is kept in the document
store's cache under a hash of what went into it (model, prompt version, text, options), so a re-run
after a Stop, a crash or a restart does no finished call twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from app.base.errors import Cancelled
from app.base.jobs import CancelToken
from app.engine.chat_format import chat_format_for
from app.runtime import Engine, SamplingOptions
from app.storage.document_store import DocumentStore


@dataclass(frozen=True)
class Reply:
    text: str
    cut: bool  # stopped by its token budget, not by the model


class CachedCalls:
    """The calls of one job: `lookup` a key, else `generate` and `keep` the result."""

    def __init__(self, engine: Engine, store: DocumentStore, kind: str, source: str) -> None:
        self.engine, self.store, self.kind, self.source = engine, store, kind, source
        self.format = chat_format_for(engine)
        self.engine_calls = self.cached_calls = 0
        self.engine_seconds = 0.0

    def lookup(self, payload: dict) -> tuple[str, str | None]:
        """The cache key of a call described by `payload`, and its kept result (None if not yet made)."""
        key = hashlib.sha256(json.dumps({"kind": self.kind, "model": self.engine.model_key, **payload},
                                        ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        value = self.store.cached(key)
        if value is not None:
            self.cached_calls += 1
        return key, value

    def keep(self, key: str, value: str) -> None:
        self.store.put_cached(key, self.kind, value, source=self.source)

    def generate(self, messages: list[dict], sampling: SamplingOptions, cancel: CancelToken,
                 show: Callable[[str], Any] | None = None) -> Iterator[Any]:
        """Run one call and return its `Reply`; with `show`, yields `show(reply so far)` as it grows.
        Raises Cancelled on Stop."""
        cancel.raise_if_cancelled()
        started = time.perf_counter()
        completion = self.engine.complete(self.format.encode(messages), sampling, cancel,
                                          decoder=self.format.decoder())
        text = ""
        for delta in completion:
            text += delta
            if show is not None:
                yield show(text)
        self.engine_calls += 1
        self.engine_seconds += time.perf_counter() - started
        if completion.stats.stop_reason == "cancelled":
            raise Cancelled()
        return Reply(text, completion.stats.stop_reason == "length")

    def encoded_length(self, messages: list[dict]) -> int:
        return len(self.format.encode(messages))
