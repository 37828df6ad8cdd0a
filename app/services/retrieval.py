"""Retrieval, in one place: questions asked of stored documents, and the context a chat gets for one.

`ask` answers a question from one or several documents with checked citations (citations.py):

- **Quick** (the default): the chunks that best match the question across the chosen documents
  (SQLite FTS5 bm25, one ranking), as many as fit the context, numbered [1], [2]… for one call.
- **Whole**: every chunk is read. Consecutive chunks of a document are packed into map calls that
  fit the context (fanned out on the engine's sequences, like a summary's levels); each returns the
  sentences bearing on the question, copied, or NONE. Each map call is cached under its chunks'
  text and the question, so a re-run after a Stop reads only the chunks not yet read. A reduce call
  then writes the answer from the numbered quotes. A call stopped while writing (a map call or the
  answer) goes on from the tokens it wrote when the question is asked again (engine_calls.py).

A source names the document, its page (PDF) or section (heading path), and a quote found verbatim
in the cited chunk, or, marked `verified=False`, the chunk's own sentence shown instead.
Services return data; the faces word it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Iterator

from app.base.errors import Cancelled, UserError
from app.base.jobs import CancelToken, Progress, side_by_side
from app.base.messages import Message
from app.documents.reading import CountTokens
from app.engine.chat_format import token_counter
from app.runtime import Engine, SamplingOptions
from app.services.citations import QUOTE, best_sentence, check_answer, found_in, normalized, words
from app.services.engine_calls import CachedCalls, CallProgress
from app.storage.document_store import Chunk, DocumentStore, reference

PROMPT_VERSION = 1
ANSWER_TOKENS = 400  # most tokens of an answer (fewer on small contexts)
MAP_TOKENS = 160  # most tokens of one map call's quotes
RELEVANCE_CUTOFF = 0.3  # Quick mode leaves out matches less than this share as relevant as the best
UNCITED_SOURCES = 3  # an answer that cites nothing lists this many of the passages it was given
FINDING, READING, ANSWERING = "finding passages", "reading the documents", "writing the answer"
STOPPED, DONE = "stopped", "done"  # with the three above: Progress.what of a question


@dataclass(frozen=True)
class Passage:
    """A stored chunk of a chosen document."""

    document_id: int
    document: str  # its file name
    position: int
    chunk: Chunk

    @property
    def label(self) -> str:
        """'report.pdf, p. 3' or 'notes.md, § Intro > Costs'."""
        where = self.chunk.reference()
        return f"{self.document}, {where}" if where else self.document


@dataclass(frozen=True)
class Source:
    """A citation as shown: where, and a quote verbatim in that chunk (`verified`) or, when the
    answer gave none that could be found, the chunk's own sentence."""

    number: int  # [n] in the answer (0: listed, not cited)
    document_id: int
    document: str
    page: int | None
    section: str
    quote: str
    verified: bool
    position: int  # the chunk's position in its document
    page_end: int | None = None  # the chunk's last page, when it runs over more than one

    def as_json(self) -> dict:
        return {"document_id": self.document_id, "document": self.document, "page": self.page,
                "page_end": self.page_end, "section": self.section, "quote": self.quote, "verified": self.verified,
                "number": self.number}

    def where(self) -> Message:
        """'ledger.pdf, p. 27', 'ledger.pdf, pp. 27-29', 'notes.md, § Costs' or 'notes.txt', as a key."""
        place = reference(self.page, self.page_end, self.section)
        return Message("ask_where", document=self.document, place=place) if place else Message(
            "ask_where_document", document=self.document)


@dataclass
class AskResult:
    answer: str
    sources: list[Source]
    chunks_read: int
    chunks: int  # chunks of the chosen documents
    took_s: float
    stopped: bool
    whole: bool
    engine_calls: int = 0
    cached_calls: int = 0
    engine_seconds: float = 0.0
    generated_tokens: int = 0  # tokens the engine wrote in this run
    resumed_tokens: int = 0  # tokens of stopped calls taken up again, not written twice
    found: bool = True  # False: no chunk bore on the question (Whole mode), nothing was asked


@dataclass(frozen=True)
class AskUpdate:
    """How far the question is: `progress` counts chunks read of the chunks to read; `text` is the
    answer as it streams; `result` comes last."""

    progress: Progress
    tokens_read: int
    tokens_total: int
    eta_s: float | None
    text: str = ""
    result: AskResult | None = None
    call: CallProgress | None = None
    at_once: int = 0


@dataclass(frozen=True)
class _Evidence:
    """A quote a map call found in a passage (verbatim when `verified`, else the passage's sentence)."""

    passage: Passage
    quote: str
    verified: bool


def ask(engine: Engine, store: DocumentStore, document_ids: list[int], question: str, whole: bool = False,
        sampling: SamplingOptions = SamplingOptions(), cancel: CancelToken | None = None) -> Iterator[AskUpdate]:
    """Answer `question` from the stored documents; the last update carries the `AskResult`."""
    return AskJob(engine, store, document_ids, question, whole, sampling, cancel or CancelToken()).run()


class AskJob:
    """One question: the passages, the calls, the counters."""

    def __init__(self, engine: Engine, store: DocumentStore, document_ids: list[int], question: str, whole: bool,
                 sampling: SamplingOptions, cancel: CancelToken) -> None:
        self.question = " ".join(question.split())
        if not self.question:
            raise UserError("ask_empty_question")
        if not document_ids:
            raise UserError("ask_choose_a_document")
        self.engine, self.store, self.whole, self.sampling, self.cancel = engine, store, whole, sampling, cancel
        self.documents = {i: store.document(i) for i in dict.fromkeys(document_ids)}  # an unknown id fails here
        self.passages = [Passage(i, d["file_name"], n, c) for i, d in self.documents.items()
                         for n, c in enumerate(store.chunks(i))]
        first = next(iter(self.documents.values()))
        self.calls = CachedCalls(engine, store, "ask", first["sha256"])
        self.count = token_counter(engine)
        self.width = max(1, engine.parallel)
        self.margin = 16 + engine.n_ctx // 50
        self.answer_tokens = min(ANSWER_TOKENS, sampling.max_tokens, engine.n_ctx // 4)
        self.map_tokens = min(MAP_TOKENS, sampling.max_tokens, engine.n_ctx // 6)
        self.started = time.monotonic()
        self.stage = FINDING
        self.chunks_read = self.tokens_read = 0
        self.calls_expected = self.calls_done = 0
        self.tokens_total = 0
        self._counting = threading.Lock()

    def run(self) -> Iterator[AskUpdate]:
        try:
            result = yield from (self._whole() if self.whole else self._quick())
        except Cancelled:
            result = self._result("", [], stopped=True)
        self.stage = STOPPED if result.stopped else DONE
        yield self._update(result.answer, result)
        return result

    # -- quick: the best-matching passages, one call ----------------------------------------------
    def _quick(self) -> Iterator[AskUpdate]:
        room = self._room(self._answer_messages([], ""), self.answer_tokens)
        chosen, left = [], room
        for passage in self._ranked():
            size = self.count(passage.chunk.text) + 24
            if size <= left:
                chosen.append(passage)
                left -= size
        if not chosen:
            raise UserError("ask_context_too_small", tokens=f"{self.engine.n_ctx:,}")
        self.tokens_total = sum(p.chunk.tokens for p in chosen)
        self.calls_expected = 1
        texts = [p.chunk.text for p in chosen]
        answer = yield from self._answer(chosen, texts)
        with self._counting:
            self.chunks_read, self.tokens_read = len(chosen), self.tokens_total
        checked = check_answer(answer, texts, self.question)
        sources = [self._source(c.number, chosen[c.number - 1], c.quote, c.verified) for c in checked.cited]
        if not sources:  # nothing cited: the passages the answer was drawn from, best first
            sources = [self._source(0, p, best_sentence(p.chunk.text, self.question), False)
                       for p in chosen[:UNCITED_SOURCES]]
        return self._result(checked.text, sources)

    def _ranked(self) -> list[Passage]:
        """The passages matching the question, best first, down to RELEVANCE_CUTOFF of the best
        (a passage that shares only common words with the question is left out); without any
        match, every passage in order."""
        by_place = {(p.document_id, p.position): p for p in self.passages}
        matches = self.store.matching_chunks(list(self.documents), self.question)
        best = max((relevance for *_, relevance in matches), default=0.0)
        return [by_place[(document_id, position)] for document_id, position, relevance in matches
                if relevance >= RELEVANCE_CUTOFF * best] or self.passages

    # -- whole: every chunk through a map call, then one reduce call ------------------------------
    def _whole(self) -> Iterator[AskUpdate]:
        self.tokens_total = sum(p.chunk.tokens for p in self.passages)
        groups = self._groups()
        self.calls_expected = len(groups) + 1
        self.stage = READING
        found = yield from side_by_side([partial(self._map, group) for group in groups], self.width, self.cancel)
        evidence = list(dict.fromkeys(e for group in found for e in group))
        if not evidence:
            result = self._result("", [])
            result.found = False
            return result
        evidence = self._fitting(evidence)
        self.stage = ANSWERING
        answer = yield from self._answer([e.passage for e in evidence], [e.quote for e in evidence])
        checked = check_answer(answer, [e.passage.chunk.text for e in evidence], self.question)
        sources = []
        for cited in checked.cited:
            item = evidence[cited.number - 1]
            quote, verified = (cited.quote, True) if cited.verified else (item.quote, item.verified)
            sources.append(self._source(cited.number, item.passage, quote, verified))
        if not sources:
            sources = [self._source(0, e.passage, e.quote, e.verified) for e in evidence[:UNCITED_SOURCES]]
        return self._result(checked.text, list(dict.fromkeys(sources)))

    def _groups(self) -> list[list[Passage]]:
        """Consecutive passages of one document, as many as fit one map call."""
        room = self._room(self._map_messages(""), self.map_tokens)
        groups: list[list[Passage]] = []
        size = 0
        for passage in self.passages:
            tokens = self.count(passage.chunk.text) + 2
            same = groups and groups[-1][-1].document_id == passage.document_id
            if same and size + tokens <= room:
                groups[-1].append(passage)
                size += tokens
            else:
                groups.append([passage])
                size = tokens
        return groups

    def _map(self, group: list[Passage]) -> Iterator[AskUpdate]:
        """One map call over `group` (or its kept result): the evidence it found."""
        self.cancel.raise_if_cancelled()
        messages = self._map_messages("\n\n".join(p.chunk.text for p in group))
        sampling = replace(self.sampling, max_tokens=self.map_tokens)
        output = yield from self.calls.text({"v": PROMPT_VERSION, "step": "map", "messages": messages,
                                             "sampling": asdict(sampling)}, messages, sampling, self.cancel,
                                            lambda _: self._update(""),
                                            kept_from=self.documents[group[0].document_id]["sha256"])
        with self._counting:
            self.calls_done += 1
            self.chunks_read += len(group)
            self.tokens_read += sum(p.chunk.tokens for p in group)
        yield self._update("")
        return _evidence(output, group)

    def _fitting(self, evidence: list[_Evidence]) -> list[_Evidence]:
        """The evidence that fits the reduce call: verified quotes first, then by the question's words
        they share, each kept in document order."""
        room = self._room(self._answer_messages([], ""), self.answer_tokens)
        wanted = words(self.question)
        ranked = sorted(range(len(evidence)), key=lambda i: (not evidence[i].verified,
                                                               -len(wanted & words(evidence[i].quote)), i))
        kept, left = [], room
        for i in ranked:
            size = self.count(evidence[i].quote) + 24
            if size <= left:
                kept.append(i)
                left -= size
        return [evidence[i] for i in sorted(kept)]

    # -- the answering call -----------------------------------------------------------------------
    def _answer(self, passages: list[Passage], texts: list[str]) -> Iterator[AskUpdate]:
        self.stage = ANSWERING
        self.cancel.raise_if_cancelled()
        messages = self._answer_messages(passages, texts)
        sampling = replace(self.sampling, max_tokens=self.answer_tokens)
        answer = yield from self.calls.text({"v": PROMPT_VERSION, "step": "answer", "messages": messages,
                                             "sampling": asdict(sampling)}, messages, sampling, self.cancel,
                                            self._update)
        with self._counting:
            self.calls_done += 1
        return answer

    # -- prompts ----------------------------------------------------------------------------------
    def _answer_messages(self, passages: list[Passage], texts: list[str]) -> list[dict]:
        system = ("Answer the question from the numbered passages only. After each statement, cite the passage "
                  "it comes from as [1], [2]… followed by the exact words of the passage that support it, in "
                  "double quotes, like: The bridge opened in 1871 [2] \"opened to traffic in 1871\". If the "
                  "passages do not answer the question, say so. Answer in the language of the question.")
        numbered = "\n\n".join(f"[{n}] ({p.label}) {text}" for n, (p, text) in enumerate(zip(passages, texts), 1))
        return [{"role": "system", "content": system},
                {"role": "user", "content": f"Passages:\n\n{numbered}\n\nQuestion: {self.question}"}]

    def _map_messages(self, text: str) -> list[dict]:
        system = ("Copy the sentences of the passage that help answer the question, word for word, each on its "
                  "own line in double quotes. Copy nothing else. If no sentence helps, reply NONE.")
        return [{"role": "system", "content": system},
                {"role": "user", "content": f"Passage:\n\n{text}\n\nQuestion: {self.question}"}]

    def _room(self, empty_messages: list[dict], reply_tokens: int) -> int:
        """Prompt tokens left for passages in a call that writes at most `reply_tokens`."""
        room = self.engine.n_ctx - self.margin - reply_tokens - self.calls.encoded_length(empty_messages)
        if room < 64:
            raise UserError("ask_context_too_small", tokens=f"{self.engine.n_ctx:,}")
        return room

    # -- results and updates ----------------------------------------------------------------------
    def _source(self, number: int, passage: Passage, quote: str, verified: bool) -> Source:
        return Source(number, passage.document_id, passage.document, passage.chunk.page_start,
                      passage.chunk.section, quote, verified, passage.position, passage.chunk.page_end)

    def _result(self, answer: str, sources: list[Source], stopped: bool = False) -> AskResult:
        return AskResult(answer, sources, self.chunks_read, len(self.passages), time.monotonic() - self.started,
                         stopped, self.whole, self.calls.engine_calls, self.calls.cached_calls,
                         self.calls.engine_seconds, self.calls.generated_tokens, self.calls.resumed_tokens)

    def _update(self, text: str, result: AskResult | None = None) -> AskUpdate:
        running = self.calls.call
        eta = self.calls.eta_s(max(0, self.calls_expected - self.calls_done - (running is not None)))
        total = len(self.passages) if self.whole else max(self.chunks_read, 1)
        return AskUpdate(Progress(self.chunks_read, total, self.stage), self.tokens_read, self.tokens_total, eta,
                         text, result, running, len(self.calls.live))


def _evidence(output: str, group: list[Passage]) -> list[_Evidence]:
    """The quotes of a map call's output, each placed in the passage that holds it verbatim, else
    replaced by the group's sentence closest to it (marked unverified); NONE gives nothing."""
    if not output or output.strip(" .\"'").upper().startswith("NONE"):
        return []
    quoted = [m.group(1) for m in QUOTE.finditer(output)]
    candidates = quoted or [line.strip(" -*•\"'") for line in output.splitlines()]
    found: list[_Evidence] = []
    for candidate in filter(None, map(normalized, candidates)):
        holder = next((p for p in group if found_in(candidate, p.chunk.text)), None)
        if holder is not None:
            found.append(_Evidence(holder, candidate.strip(" .,;:"), True))
            continue
        wanted = words(candidate)
        if not wanted:
            continue
        closest = max(group, key=lambda p: len(wanted & words(p.chunk.text)))
        if wanted & words(closest.chunk.text):
            found.append(_Evidence(closest, best_sentence(closest.chunk.text, candidate), False))
    return list(dict.fromkeys(found))


# -- chat about a document ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChatContext:
    """What to put in a conversation for a document, and the note that tells the user which."""

    text: str
    note: Message  # for the faces to word
    whole: bool


def context_for_chat(store: DocumentStore, document_id: int, question: str, budget_tokens: int,
                     count: CountTokens | None = None) -> ChatContext:
    """The whole document when it fits `budget_tokens`, else its latest summary plus the passages
    most related to `question` (SQLite FTS5 bm25 over the chunks), in document order."""
    from app.nemo.tekken import Tekken

    count = count or Tekken.default().count
    document = store.document(document_id)
    title = document["title"]
    whole = f"Document “{title}”:\n\n{document['markdown']}"
    if count(whole) <= budget_tokens:
        return ChatContext(whole, Message("chat_context_whole", title=title, tokens=f"{document['tokens']:,}"), True)
    summaries = store.summaries(document_id)
    head = f"Document “{title}” (too long to include whole)."
    if summaries:
        head += f"\n\nSummary of the whole document:\n{summaries[0]['text']}"
    chunks = store.chunks(document_id)
    left = budget_tokens - count(head) - 8
    chosen = []
    for index in store.related_chunks(document_id, question):
        tokens = count(chunks[index].text) + 8
        if tokens <= left:
            chosen.append(index)
            left -= tokens
    passages = [f"[{chunks[i].reference()}] {chunks[i].text}" if chunks[i].reference() else chunks[i].text
                for i in sorted(chosen)]
    text = "\n\n".join([head, "Passages most related to the question:", *passages]) if passages else head
    note = Message("chat_context_summary_and_passages" if summaries else "chat_context_passages_only", title=title,
                   tokens=f"{document['tokens']:,}", left=f"{budget_tokens:,}", passages=len(passages))
    return ChatContext(text, note, False)
