"""Whole-document summaries: one pass when the document fits the context, else map-reduce.

Chunk sizes come from the loaded model's context. Level 1 summarizes each chunk; each further
level combines groups of the previous level's summaries until all of them fit one final pass, so
every part of the document reaches the final summary. Every call's result is cached under a hash
of (model, prompt version, prompt, options): a re-run after a Stop, a crash or a restart only does
what is missing, and a call stopped while writing goes on from the tokens it wrote. The finished
summary is kept with the document.

The document's size is one number everywhere: its stored token count (NeMo's Tekken tokens, as the
Documents table shows it). Progress counts in it: each call that reads the document is given its
share of that count, which moves as the call reads its prompt and is whole once the call writes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Iterator

from app.base.errors import Cancelled, UserError
from app.base.jobs import CancelToken, Progress, side_by_side
from app.documents.language import LANGUAGES, LanguageCheck, check_language, language_name
from app.documents.reading import TOKENIZER, pack
from app.engine.chat_format import token_counter
from app.runtime import Engine, SamplingOptions
from app.services.engine_calls import CachedCalls, CallProgress
from app.storage.document_store import Chunk, DocumentStore

PROMPT_VERSION = 1
LENGTHS = {  # how the final summary is asked for, and its most tokens
    "short": ("in two or three sentences", 160),
    "medium": ("in one or two paragraphs", 400),
    "long": ("in detail, in several paragraphs that follow the document's structure", 900),
    "bullets": ("as five to ten Markdown bullet points", 450),
}
PARTIAL_TOKENS = 300  # most tokens of one partial summary (fewer on small contexts)
SINGLE, MAP, REDUCE, FINAL = "single", "map", "reduce", "final"
READING_DOCUMENT, COMBINING_SUMMARIES = "reading the document", "combining summaries"
WRITING_SUMMARY = "writing the summary"
STARTING, STOPPED, DONE = "starting", "stopped", "done"  # with the three above: Progress.what of a summary
STAGES = {MAP: READING_DOCUMENT, REDUCE: COMBINING_SUMMARIES, SINGLE: WRITING_SUMMARY, FINAL: WRITING_SUMMARY}


@dataclass(frozen=True)
class SummaryOptions:
    length: str = "medium"
    language: str = ""  # "" = the document's own language
    references: bool = False  # cite pages or sections as [p. 3]


@dataclass
class Level:
    """One level of the tree: the inputs of each call and what each call wrote."""

    kind: str
    groups: list[list[str]]
    outputs: list[str] = field(default_factory=list)


@dataclass
class SummaryResult:
    text: str
    stopped: bool
    document_tokens: int  # the document's stored count (TOKENIZER's tokens), as shown everywhere
    chunks: int  # calls that read the document itself
    levels: list[Level]
    engine_calls: int
    cached_calls: int
    engine_seconds: float  # time spent inside the engine
    generated_tokens: int = 0  # tokens the engine wrote in this run
    resumed_tokens: int = 0  # tokens of stopped calls taken up again, not written twice
    language: LanguageCheck | None = None  # the language asked for and the one the summary reads as
    summary_id: int | None = None


@dataclass(frozen=True)
class SummaryUpdate:
    """How far the job is; `text` is the final summary as it streams; `result` comes last."""

    progress: Progress  # calls done / calls expected
    tokens_read: int  # of the document's tokens, read so far (the calls under way count as they read)
    tokens_total: int  # the document's stored count
    eta_s: float | None
    text: str = ""
    result: SummaryResult | None = None
    call: CallProgress | None = None  # the (first) engine call under way
    at_once: int = 0  # engine calls under way (several on an engine with parallel sequences)
    tokenizer: str = TOKENIZER  # what counted tokens_read and tokens_total


def summarize(engine: Engine, store: DocumentStore, document_id: int, options: SummaryOptions = SummaryOptions(),
              sampling: SamplingOptions = SamplingOptions(), cancel: CancelToken | None = None,
              partial_tokens: int = PARTIAL_TOKENS) -> Iterator[SummaryUpdate]:
    """Summarize a stored document with the loaded model; the last update carries the result."""
    return SummaryJob(engine, store, document_id, options, sampling, cancel or CancelToken(), partial_tokens).run()


class SummaryJob:
    """One run of `summarize`: the plan, the counters and the calls."""

    def __init__(self, engine: Engine, store: DocumentStore, document_id: int, options: SummaryOptions,
                 sampling: SamplingOptions, cancel: CancelToken, partial_tokens: int) -> None:
        if options.length not in LENGTHS:
            raise UserError("summary_unknown_length", length=repr(options.length), choices=", ".join(LENGTHS))
        if options.language and options.language not in LANGUAGES:
            raise UserError("summary_unknown_language", language=repr(options.language), choices=", ".join(LANGUAGES))
        self.engine, self.store, self.options, self.sampling, self.cancel = engine, store, options, sampling, cancel
        self.document = store.document(document_id)
        self.language = options.language or self.document["language"]
        self.calls = CachedCalls(engine, store, "summary", self.document["sha256"])
        self.width = max(1, engine.parallel)  # calls of one level at once
        self._counting = threading.Lock()
        self.count = token_counter(engine)
        self.model = engine.model_name
        n_ctx = engine.n_ctx
        self.margin = 16 + n_ctx // 50
        room = n_ctx - self.margin - max(self._overhead(kind, 0) for kind in (MAP, REDUCE))
        if room < 64:
            raise UserError("summary_context_too_small", tokens=f"{n_ctx:,}")
        self.partial_tokens = min(partial_tokens, room // 5)  # a group always holds 4+ partial summaries
        self.chunk_tokens = room - self.partial_tokens
        self.final_tokens = min(LENGTHS[options.length][1], n_ctx // 4)
        self.final_room = n_ctx - self.margin - self.final_tokens - self._overhead(FINAL, self.final_tokens)
        self.levels: list[Level] = []
        self.calls_done = self.calls_expected = 0
        self.tokens_read = self.tokens_total = 0

    # -- the plan --------------------------------------------------------------------------------
    def run(self) -> Iterator[SummaryUpdate]:
        try:
            summary = yield from self._summary()
        except Cancelled:
            summary = None
        stopped = summary is None
        first = self.levels[0] if self.levels else None
        result = SummaryResult(
            text=summary or "", stopped=stopped, document_tokens=self.document["tokens"],
            chunks=len(first.groups) if first else 0, levels=self.levels, engine_calls=self.calls.engine_calls,
            cached_calls=self.calls.cached_calls, engine_seconds=self.calls.engine_seconds,
            generated_tokens=self.calls.generated_tokens, resumed_tokens=self.calls.resumed_tokens,
        )
        if not stopped:
            result.language = check_language(summary, self.language)
            result.summary_id = self.store.save_summary(
                self.document["id"], self.model, asdict(replace(self.options, language=self.language)),
                summary, result.chunks, len(self.levels),
            )
        yield self._update(summary or "", result)
        return result

    def _summary(self) -> Iterator[SummaryUpdate]:
        """Level by level until everything fits one pass; returns the summary (raises Cancelled)."""
        pieces = self._document_pieces()
        counts = [self.count(p.text) for p in pieces]
        self.tokens_total = self.document["tokens"]
        kind = MAP
        while sum(counts) + len(counts) > self.final_room:
            groups = [[p.text for p in group] for group in pack(pieces, self.chunk_tokens, self.count)]
            shares = self._shares([sum(map(self.count, group)) for group in groups]) if kind == MAP else [0] * len(groups)
            level = Level(kind, groups)
            self.levels.append(level)
            self.calls_expected = self.calls_done + self._calls_left(len(groups))
            if self.width == 1:  # one by one, each output kept as it comes (a Stop keeps those done)
                for group, share in zip(groups, shares):
                    level.outputs.append((yield from self._call(kind, group, self.partial_tokens, share=share)))
            else:  # the engine runs several sequences: the level's calls go side by side
                level.outputs += yield from side_by_side(
                    [partial(self._call, kind, group, self.partial_tokens, share=share)
                     for group, share in zip(groups, shares)], self.width, self.cancel)
            pieces, kind = [Chunk(text) for text in level.outputs], REDUCE
            counts = [self.count(text) for text in level.outputs]
        kind = SINGLE if not self.levels else FINAL
        group = [p.text for p in pieces]
        level = Level(kind, [group])
        self.levels.append(level)
        self.calls_expected = self.calls_done + 1
        share = self.tokens_total if kind == SINGLE else 0
        summary = yield from self._call(kind, group, self.final_tokens, stream=True, share=share)
        level.outputs.append(summary)
        return summary

    def _document_pieces(self) -> list[Chunk]:
        pieces = self.store.chunks(self.document["id"])
        if not self.options.references:
            return pieces
        return [replace(p, text=f"[{p.reference()}] {p.text}") if p.reference() else p for p in pieces]

    def _shares(self, counts: list[int]) -> list[int]:
        """The document's stored count split between calls in proportion to their text's `counts`
        (the loaded model's tokens), summing to it exactly."""
        total, seen, given, shares = max(1, sum(counts)), 0, 0, []
        for count in counts:
            seen += count
            shares.append(round(self.tokens_total * seen / total) - given)
            given += shares[-1]
        return shares

    def _calls_left(self, n: int) -> int:
        """Calls expected from a level of `n` calls on: this level, the reductions, the final pass."""
        total = n
        while n * (self.partial_tokens + 1) > self.final_room:
            n = math.ceil(n * (self.partial_tokens + 1) / self.chunk_tokens)
            total += n
        return total + 1

    # -- one call --------------------------------------------------------------------------------
    def _call(self, kind: str, group: list[str], max_tokens: int, stream: bool = False,
              share: int = 0) -> Iterator[SummaryUpdate]:
        """Run (or take from the cache) one call that reads `share` of the document's tokens; return its text."""
        self.cancel.raise_if_cancelled()
        messages = self._messages(kind, "\n\n".join(group), max_tokens)
        sampling = replace(self.sampling, max_tokens=max_tokens)
        output = yield from self.calls.text({"v": PROMPT_VERSION, "messages": messages, "sampling": asdict(sampling)},
                                            messages, sampling, self.cancel,
                                            lambda text: self._update(text if stream else ""), share)
        with self._counting:
            self.calls_done += 1
            self.tokens_read += share
        yield self._update(output if stream else "")
        return output

    def _update(self, text: str, result: SummaryResult | None = None) -> SummaryUpdate:
        running = self.calls.call
        eta = self.calls.eta_s(max(0, self.calls_expected - self.calls_done - (running is not None)))
        label = STAGES[self.levels[-1].kind] if self.levels else STARTING
        if result is not None:
            label = STOPPED if result.stopped else DONE
        progress = Progress(self.calls_done, max(self.calls_expected, self.calls_done), label)
        read = self.tokens_read + (self.calls.source_read() if result is None else 0)
        return SummaryUpdate(progress, read, self.tokens_total, eta, text, result, running, len(self.calls.live))

    # -- prompts ---------------------------------------------------------------------------------
    def _messages(self, kind: str, text: str, max_tokens: int) -> list[dict]:
        title = self.document["title"]
        words = max(20, int(max_tokens * 0.6))
        write = f"Write in {language_name(self.language)}. Reply with the summary only."
        if kind in (SINGLE, FINAL):
            style = LENGTHS[self.options.length][0]
            cite = " Cite the page or section references given in square brackets, like [p. 3]."
            task = (f"Summarize the document “{title}” {style}." if kind == SINGLE else
                    f"These are summaries of consecutive parts of the document “{title}”. "
                    f"From them, summarize the whole document {style}.")
        else:
            cite = " Keep the references in square brackets, like [p. 3], next to the points they support."
            task = (f"This is one part of the longer document “{title}”. Summarize this part in at most "
                    f"{words} words, keeping names, numbers, dates and conclusions." if kind == MAP else
                    f"These are summaries of consecutive parts of the document “{title}”. Combine them into "
                    f"one summary of at most {words} words that keeps every important point, in order.")
        system = f"{task}{cite if self.options.references else ''} {write}"
        return [{"role": "system", "content": system}, {"role": "user", "content": text}]

    def _overhead(self, kind: str, max_tokens: int) -> int:
        """Prompt tokens of a call apart from its text."""
        return self.calls.encoded_length(self._messages(kind, "", max_tokens))
