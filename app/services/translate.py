"""Translation of text and whole documents, structure kept, resumable.

The text (Markdown, or plain text) is cut into pieces by `markdown_segments`: only prose reaches
the model, with code, URLs, link targets and HTML replaced by markers. Pieces are grouped into
segments of a token budget; each segment is one request of numbered lines, carrying the previous
segment and its translation as an earlier turn so that terms stay consistent. On an engine that
runs several sequences (`engine.parallel`), the segments are cut into that many runs of
consecutive segments ("lanes") translated side by side; each lane is done in order, and only a
lane's first segment goes without the previous one as context. Each segment's
result is cached under a hash of (its text, languages, model, prompt version, the glossary terms
that occur in it): a re-run after a Stop does no finished segment again, and a changed glossary
redoes only the segments that contain a changed term. The context turn is not part of the key.
A request stopped while writing keeps the tokens it wrote under its own key (its whole prompt):
the re-run goes on from them instead of writing them again (engine_calls.py).

What this module guarantees is tested with a small model; how well Mistral NeMo translates can't
be measured here without its weights.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial

from app.base.errors import Cancelled, UserError
from app.base.jobs import CancelToken, Progress, side_by_side
from app.base.messages import Message
from app.documents import markdown_segments as md
from app.documents.language import LANGUAGES, LanguageCheck, check_language, detect_language
from app.documents.reading import group_texts, split_text
from app.engine.chat_format import token_counter
from app.runtime import Engine, SamplingOptions
from app.services.engine_calls import CachedCalls, CallProgress
from app.services.glossary import Glossary, glossary_for, term_in
from app.storage.document_store import DocumentStore

PROMPT_VERSION = 2  # 2: a link is a pair of markers around its text
AUTO = "auto"
SEGMENT_TOKENS = 400  # most source tokens in one request (fewer on small contexts)
NO_SPACES = {"zh", "ja"}  # parts of a long paragraph are joined without a space
LINE_RE = re.compile(r"\s*\[(\d+)\]\s?(.*)")

# -- languages -----------------------------------------------------------------------------------


def _other_languages() -> dict[str, str]:
    """Languages the detector library knows beyond NeMo's eleven: code -> English name."""
    from lingua import Language

    return {lang.iso_code_639_1.name.lower(): lang.name.title() for lang in Language.all()}


def english_name(code: str) -> str:
    """'French', 'Swedish': the language's English name, for the model's prompt."""
    return LANGUAGES.get(code) or _other_languages().get(code, code)


def language_choices() -> list[tuple[Message, str]]:
    """(what to call the language, code) pairs for the faces to word: NeMo's languages first, then
    the others (less supported), by English name."""
    others = sorted((name, code) for code, name in _other_languages().items() if code not in LANGUAGES)
    return [(language_said(code), code) for code in [*LANGUAGES, *(code for _, code in others)]]


def resolve_language(value: str, allow_auto: bool = False) -> str:
    """An ISO 639-1 code from a code or an English name ('fr', 'French'); UserError if unknown."""
    wanted = (value or "").strip().lower()
    if allow_auto and wanted in (AUTO, ""):
        return AUTO
    known = {**_other_languages(), **LANGUAGES}
    for code, name in known.items():
        if wanted in (code, name.lower()):
            return code
    raise UserError("translate_unknown_language", value=repr(value), codes=", ".join(LANGUAGES))


def language_said(code: str) -> Message:
    """The language's name for the faces to word: one of NeMo's eleven, or another, less supported."""
    key = f"language_{code}"
    return Message(key) if code in LANGUAGES else Message("language_less_supported", name=_other_languages().get(code, code))


# -- requests and replies ------------------------------------------------------------------------


def system_prompt(source: str, target: str, glossary: Glossary) -> str:
    prompt = (
        f"You are a professional translator. Translate the user's text from {english_name(source)} into "
        f"{english_name(target)}. The text comes as numbered lines like “[1] …”: reply with the same "
        "numbered lines, each one translated, in the same order, and nothing else. Markers like ⟦1⟧ stand "
        "for code, links or formatting: copy every marker unchanged to the place where it belongs. Two markers "
        "around words, like “⟦1⟧the manual⟦2⟧”, are a link: translate the words and keep them between the same "
        "two markers. Keep Markdown emphasis (*, **, _), names and numbers."
    )
    if glossary:
        terms = "; ".join(f"“{s}” → “{t}”" for s, t in glossary)
        prompt += f" Always translate these terms this way: {terms}."
    return prompt


def numbered(texts: list[str]) -> str:
    return "\n".join(f"[{n}] {text}" for n, text in enumerate(texts, 1))


def parse_numbered(reply: str, count: int) -> list[str] | None:
    """The `count` translated lines of a reply, or None when its numbering is broken.

    A one-line request always succeeds: line 1 if the reply numbers it, else the whole reply.
    """
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    found: dict[int, str] = {}
    current, repeated = None, False
    for line in lines:
        match = LINE_RE.match(line)
        if match:
            current = int(match.group(1))
            repeated = repeated or current in found
            found.setdefault(current, match.group(2))
        elif current is not None:
            found[current] += " " + line
    if count == 1:
        return [found[1].strip() if 1 in found else " ".join(lines)]
    if repeated or sorted(found) != list(range(1, count + 1)):
        return None
    return [found[n].strip() for n in range(1, count + 1)]


def unnumbered(reply: str) -> str:
    """A reply as a person reads it: the request's line numbers taken off."""
    return "\n".join(m.group(2) if (m := LINE_RE.match(line)) else line for line in reply.split("\n"))


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A piece's text, or one part of a piece too long for one request."""

    piece: int
    text: str


@dataclass(frozen=True)
class TranslateOptions:
    segment_tokens: int = SEGMENT_TOKENS
    temperature: float = 0.3
    max_tokens: int = 0  # a cap on what one request may write (else twice its source and some room)


@dataclass(frozen=True)
class TranslationRequest:
    text: str
    target: str
    source: str = AUTO
    markdown: bool = True
    glossary: Glossary = ()
    title: str = ""
    document_id: int | None = None


@dataclass(frozen=True)
class Cut:
    """A reply that reached its token budget before the model finished."""

    segment: int  # 0-based
    tokens: int
    why: str  # what set the budget: CAP, ROOM or TWICE


CAP, ROOM, TWICE = "cap", "room", "twice"
CUT_REASONS = {CAP: "translate_cut_by_cap", ROOM: "translate_cut_by_room", TWICE: "translate_cut_by_twice"}  # locale keys


def cut_notes(cuts: list[Cut]) -> list[Message]:
    """One note per reason, for the faces to word: '2 replies were cut short at 40 to 44 tokens (the
    “Max reply tokens” setting): the end of parts 1 and 3 may be missing.'"""
    notes = []
    for why, reason_key in CUT_REASONS.items():
        these = [cut for cut in cuts if cut.why == why]
        if not these:
            continue
        parts = sorted({cut.segment + 1 for cut in these})
        sizes = sorted({cut.tokens for cut in these})
        at = Message("translate_cut_at", tokens=f"{sizes[0]:,}") if len(sizes) == 1 else \
            Message("translate_cut_between", low=f"{sizes[0]:,}", high=f"{sizes[-1]:,}")
        where = Message("translate_in_part" if len(parts) == 1 else "translate_in_parts", numbers=listed(parts))
        notes.append(Message("translate_cut_one" if len(these) == 1 else "translate_cut_many", count=f"{len(these):,}",
                             at=at, reason=Message(reason_key), parts=where))
    return notes


def listed(numbers: list[int]) -> str | Message:
    """'1', or '1 and 3', '1, 3 and 4' for the faces to word."""
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else Message("list_and", first=", ".join(words[:-1]), last=words[-1])


@dataclass(frozen=True)
class GlossaryMiss:
    source: str
    target: str
    segments: tuple[int, ...]  # 1-based numbers of the segments where the target term is missing


@dataclass
class TranslationResult:
    text: str
    stopped: bool
    source_language: str
    target_language: str
    segments: int
    engine_calls: int
    cached_segments: int
    misses: list[GlossaryMiss]
    problems: list[Message]  # notes on parts put back by hand or cut short, for the faces to word
    structure_kept: bool
    language: LanguageCheck | None = None  # the target language and the one the translation reads as
    translation_id: int | None = None


@dataclass(frozen=True)
class TranslationUpdate:
    """Segments done / total; while a segment is written, its number, the reply so far and where
    the engine call is; the time left at the rates measured so far."""

    progress: Progress
    segment: int | None = None
    partial: str = ""
    result: TranslationResult | None = None
    call: CallProgress | None = None
    eta_s: float | None = None


def plan_segments(pieces: list[md.Piece], budget: int, count) -> list[list[Unit]]:
    """Pieces cut into units of at most `budget` tokens, grouped into requests of about `budget`."""
    units = []
    for i, piece in enumerate(pieces):
        parts = [piece.text] if count(piece.text) <= budget else split_text(piece.text, budget, count)
        units += [Unit(i, part.strip()) for part in parts if part.strip()]
    groups = group_texts([unit.text for unit in units], budget, count)
    segments, start = [], 0
    for group in groups:
        segments.append(units[start : start + len(group)])
        start += len(group)
    return segments


def lanes(n: int, width: int) -> list[range]:
    """`n` segments cut into at most `width` runs of consecutive segments, as even as can be."""
    width = min(width, n) or 1
    bounds = [round(k * n / width) for k in range(width + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


class TranslationJob:
    """One translation: the plan, the outputs so far, and the run that fills them."""

    def __init__(self, engine: Engine, store: DocumentStore, request: TranslationRequest,
                 options: TranslateOptions = TranslateOptions()) -> None:
        self.engine, self.store, self.request, self.options = engine, store, request, options
        self.source = md.normalize(request.text)
        self.pieces = (md.markdown_pieces if request.markdown else md.text_pieces)(self.source)
        if not self.pieces:
            raise UserError("translate_no_prose")
        self.target = resolve_language(request.target)
        self.source_language = resolve_language(request.source, allow_auto=True)
        if self.source_language == AUTO:
            self.source_language = detect_language(" ".join(md.MARKER_RE.sub(" ", p.text) for p in self.pieces))
        if self.source_language == self.target:
            detected = request.source in (AUTO, "")
            raise UserError("translate_already_in_detected" if detected else "translate_already_in",
                            language=language_said(self.target))
        self.source_sha256 = (store.document(request.document_id)["sha256"] if request.document_id is not None
                              else hashlib.sha256(self.source.encode()).hexdigest())
        self.calls = CachedCalls(engine, store, "translation", self.source_sha256)
        self.count = token_counter(engine)
        self.overhead = self.calls.encoded_length(self._messages([""], request.glossary))  # a request's prompt, less its text
        room = engine.n_ctx - self.overhead
        if room // 7 < 24:
            raise UserError("translate_context_too_small", tokens=f"{engine.n_ctx:,}")
        self.segments = plan_segments(self.pieces, min(options.segment_tokens, room // 7), self.count)
        self.row_bounds = self._row_bounds()
        self.units_per_piece = Counter(unit.piece for segment in self.segments for unit in segment)
        self.piece_segments: dict[int, list[int]] = {}
        for n, segment in enumerate(self.segments):
            for i in dict.fromkeys(unit.piece for unit in segment):
                self.piece_segments.setdefault(i, []).append(n)
        self.filled: dict[int, tuple[str, list[Message]]] = {}  # piece -> (its translation put back, problems)
        self.outputs: list[list[str] | None] = [None] * len(self.segments)
        self.lanes = lanes(len(self.segments), max(1, engine.parallel))
        self.lane_starts = {lane.start for lane in self.lanes}
        self.writing: dict[int, str] = {}  # segment -> its reply so far (unnumbered), while it is written
        self.cuts: list[Cut] = []
        self.result: TranslationResult | None = None
        self.unit_tokens = [[self.count(unit.text) for unit in segment] for segment in self.segments]
        self.requests: dict[int, tuple[int, int]] = {}  # begun segment -> (requests made, requests it takes so far)
        self.measured = [0, 0]  # source tokens and tokens written by the finished requests not cut short

    # -- the run ---------------------------------------------------------------------------------
    def run(self, cancel: CancelToken | None = None) -> Iterator[TranslationUpdate]:
        """Translate lane by lane, the lanes side by side (cached segments at once); the last update
        carries the result."""
        cancel = cancel or CancelToken()
        try:
            yield from side_by_side([partial(self._run_lane, lane, cancel) for lane in self.lanes], len(self.lanes),
                                    cancel)
        except Cancelled:
            pass
        self.result = self._finish(stopped=None in self.outputs)
        yield TranslationUpdate(self.progress(), result=self.result)
        return self.result

    def _run_lane(self, lane: range, cancel: CancelToken) -> Iterator[TranslationUpdate]:
        """Translate the segments of one lane in order (cached ones at once)."""
        for index in lane:
            key, cached = self.calls.lookup(self._key_payload(index))
            if cached is not None:
                self.requests[index] = (0, 0)
                self.outputs[index] = json.loads(cached)
            else:
                self.requests[index] = (0, 1)
                self.outputs[index] = yield from self._translate(index, cancel)
                self.calls.keep(key, json.dumps(self.outputs[index], ensure_ascii=False))
            self.writing.pop(index, None)
            self._fill(index)
            yield TranslationUpdate(self.progress(), eta_s=self._eta_s())

    def _translate(self, index: int, cancel: CancelToken) -> Iterator[TranslationUpdate]:
        """One segment's unit translations (several requests when the numbering came back broken)."""
        texts = [unit.text for unit in self.segments[index]]
        reply = yield from self._request(index, texts, cancel)
        outputs = parse_numbered(reply, len(texts))
        self.requests[index] = (1, 1 if outputs is not None else 1 + len(texts))
        if outputs is not None:
            return outputs
        outputs = []
        for made, text in enumerate(texts, 2):  # one unit per request: the numbering cannot break
            reply = yield from self._request(index, [text], cancel)
            outputs += parse_numbered(reply, 1)
            self.requests[index] = (made, 1 + len(texts))
        return outputs

    def _request(self, index: int, texts: list[str], cancel: CancelToken) -> Iterator[TranslationUpdate]:
        """Stream one request's reply (raises Cancelled on Stop)."""
        glossary = glossary_for(self.request.glossary, " ".join(texts))
        context = self._context(index)
        messages = self._messages(texts, glossary, context)
        wanted, why = self._most_tokens(texts)
        room = self.engine.n_ctx - self.calls.encoded_length(messages) - 1
        if room < min(wanted, 64) and context:  # a long previous segment: go without it
            messages = self._messages(texts, glossary)
            room = self.engine.n_ctx - self.calls.encoded_length(messages) - 1
        if room < wanted:
            why = ROOM
        sampling = SamplingOptions(temperature=self.options.temperature, max_tokens=max(1, min(wanted, room)))
        key = self.calls.key({"v": PROMPT_VERSION, "messages": messages, "sampling": asdict(sampling)})
        reply = yield from self.calls.generate(messages, sampling, cancel, lambda text: self._update(index, text), key)
        if reply.cut:
            self.cuts.append(Cut(index, sampling.max_tokens, why))
        else:
            self.measured = [self.measured[0] + self.count(" ".join(texts)), self.measured[1] + reply.written]
        return reply.text

    def _update(self, index: int, so_far: str) -> TranslationUpdate:
        """Segment `index` is being written: its reply so far, the call and the time left."""
        self.writing[index] = unnumbered(so_far)
        return TranslationUpdate(self.progress(), index, so_far, call=self.calls.call, eta_s=self._eta_s())

    def requests_left(self) -> list[tuple[int, int]]:
        """(source tokens, lines) of each request to make after those under way: one per segment not
        begun, and one per line of a segment whose numbering came back broken."""
        left = []
        for n, tokens in enumerate(self.unit_tokens):
            made, takes = self.requests.get(n, (0, 0))
            if n not in self.requests:
                left.append((sum(tokens), len(tokens)))
            elif takes > 1:  # line `made - 1` is under way
                left += [(line, 1) for line in tokens[made:]]
        return left

    def request_count(self) -> tuple[int, int]:
        """(requests begun, requests in all so far): those made or under way, and those still to make
        (a part takes one more per line when a reply's numbering breaks; a cached part takes none)."""
        begun = planned = 0
        for n in range(len(self.segments)):
            made, takes = self.requests.get(n, (0, 1))
            planned += takes
            begun += made + (n in self.requests and made < takes)
        return begun, planned

    def _eta_s(self) -> float | None:
        """The time left: the requests left, with the tokens they will read and write, as many at
        once as there are lanes. A request writes at the ratio measured on the replies so far (its
        whole budget until one is measured), never past its budget."""
        left = self.requests_left()
        reads = sum(self.overhead + tokens + 4 * lines for tokens, lines in left)
        writes = sum(self._likely_written(tokens, lines) for tokens, lines in left)
        width = len(self.lanes)
        return self.calls.eta_s(len(left) / width, reads / width, writes / width)

    def _likely_written(self, tokens: int, lines: int) -> float:
        most = self._budget(tokens, lines)[0]
        source, written = self.measured
        return min(most, written / source * tokens + 4 * lines) if source else most

    def _most_tokens(self, texts: list[str]) -> tuple[int, str]:
        return self._budget(self.count(" ".join(texts)), len(texts))

    def _budget(self, tokens: int, lines: int) -> tuple[int, str]:
        """What a request may write: twice its source and some room (TWICE), or the cap if lower (CAP)."""
        wanted = 2 * tokens + 8 * lines + 32
        if self.options.max_tokens and self.options.max_tokens < wanted:
            return self.options.max_tokens, CAP
        return wanted, TWICE

    def _context(self, index: int) -> tuple[list[str], list[str]] | None:
        if index in self.lane_starts or self.outputs[index - 1] is None:
            return None
        return [unit.text for unit in self.segments[index - 1]], self.outputs[index - 1]

    def _messages(self, texts: list[str], glossary: Glossary,
                  context: tuple[list[str], list[str]] | None = None) -> list[dict]:
        messages = [{"role": "system", "content": system_prompt(self.source_language, self.target, glossary)}]
        if context:
            messages += [{"role": "user", "content": numbered(context[0])},
                         {"role": "assistant", "content": numbered(context[1])}]
        return messages + [{"role": "user", "content": numbered(texts)}]

    def _key_payload(self, index: int) -> dict:
        """What a segment's cached translation depends on (the context turn is left out)."""
        texts = [unit.text for unit in self.segments[index]]
        return {"v": PROMPT_VERSION, "from": self.source_language, "to": self.target, "texts": texts,
                "glossary": glossary_for(self.request.glossary, " ".join(texts)),
                "temperature": self.options.temperature, "max_tokens": self._most_tokens(texts)[0]}

    def progress(self) -> Progress:
        done = sum(output is not None for output in self.outputs)
        return Progress(done, len(self.segments), Message("progress_translating_into", language=language_said(self.target)))

    # -- the text --------------------------------------------------------------------------------
    def _fill(self, index: int) -> None:
        """Put back each piece of segment `index` whose every part is translated now."""
        joiner = "" if self.target in NO_SPACES else " "
        for i in dict.fromkeys(unit.piece for unit in self.segments[index]):
            parts = [output for n in self.piece_segments[i] for unit, output in
                     zip(self.segments[n], self.outputs[n] or []) if unit.piece == i]
            if len(parts) == self.units_per_piece[i]:
                self.filled[i] = md.fill(self.pieces[i], joiner.join(parts))

    def _replacements(self) -> list[tuple[int, int, str]]:
        """(start, end, translation) of every translated piece, in order (an empty one keeps its source)."""
        return [(self.pieces[i].start, self.pieces[i].end, self.filled[i][0])
                for i in sorted(self.filled) if self.filled[i][0]]

    def text(self) -> str:
        """The translation so far; pieces not translated yet keep their source text."""
        return md.assemble(self.source, self._replacements())

    def _row_bounds(self) -> list[tuple[int, int, list[int]]]:
        """(start, end, segment numbers) of each side-by-side row; the rows join to the whole text.

        A row ends where its last segment's last piece ends; a paragraph too long for one segment
        keeps all its segments in one row."""
        bounds: list[tuple[int, int, list[int]]] = []
        for n, segment in enumerate(self.segments):
            end = self.pieces[segment[-1].piece].end
            if bounds and self.pieces[segment[0].piece].start < bounds[-1][1]:
                bounds[-1] = (bounds[-1][0], end, bounds[-1][2] + [n])
            else:
                bounds.append((bounds[-1][1] if bounds else 0, end, [n]))
        bounds[-1] = (bounds[-1][0], len(self.source), bounds[-1][2])
        return bounds

    def rows(self) -> list[tuple[str, str | None]]:
        """(source, translation) of each row; the translation is None until a segment in it is done."""
        done = self._replacements()
        starts = [start for start, _, _ in done]
        rows = []
        for start, end, segments in self.row_bounds:
            translated = None
            if any(self.outputs[n] is not None for n in segments):
                inside = done[bisect.bisect_left(starts, start) : bisect.bisect_left(starts, end)]
                translated = md.assemble(self.source, inside, start, end)
            rows.append((self.source[start:end], translated))
        return rows

    def row_of(self, segment: int) -> int:
        return next(i for i, (_, _, segments) in enumerate(self.row_bounds) if segment in segments)

    def misses(self) -> list[GlossaryMiss]:
        """Glossary pairs whose source term is in a segment but whose target term is not in its translation."""
        found: dict[tuple[str, str], list[int]] = {}
        for n, (segment, outputs) in enumerate(zip(self.segments, self.outputs), 1):
            if outputs is None:
                continue
            for source, target in glossary_for(self.request.glossary, " ".join(u.text for u in segment)):
                if not term_in(target, " ".join(outputs)):
                    found.setdefault((source, target), []).append(n)
        return [GlossaryMiss(s, t, tuple(segments)) for (s, t), segments in found.items()]

    def _finish(self, stopped: bool) -> TranslationResult:
        text = self.text()
        problems = [problem for i in sorted(self.filled) for problem in self.filled[i][1]]
        kept = not self.request.markdown or md.outline(text) == md.outline(self.source)
        written = " ".join(line for outputs in self.outputs if outputs for line in outputs)
        result = TranslationResult(
            text=text, stopped=stopped, source_language=self.source_language, target_language=self.target,
            segments=len(self.segments), engine_calls=self.calls.engine_calls, cached_segments=self.calls.cached_calls,
            misses=self.misses(), problems=cut_notes(self.cuts) + problems, structure_kept=kept,
            language=check_language(md.MARKER_RE.sub(" ", written), self.target),
        )
        result.translation_id = self.store.save_translation({
            "document_id": self.request.document_id, "source_sha256": self.source_sha256,
            "source_text": "" if self.request.document_id is not None else self.source,
            "title": self.request.title or md.MARKER_RE.sub("…", self.pieces[0].text)[:80],
            "format": "markdown" if self.request.markdown else "text", "source_language": self.source_language,
            "target_language": self.target, "model": self.engine.model_name,
            "glossary": json.dumps(self.request.glossary, ensure_ascii=False), "text": text,
            "status": "stopped" if stopped else "complete", "segments": len(self.segments),
            "segments_done": len(self.segments) - self.outputs.count(None),
            "misses": json.dumps([asdict(m) for m in result.misses], ensure_ascii=False),
        })
        return result


def translate(engine: Engine, store: DocumentStore, request: TranslationRequest,
              options: TranslateOptions = TranslateOptions(), cancel: CancelToken | None = None) -> TranslationResult:
    """Translate to the end (or until stopped) and return the result."""
    job = TranslationJob(engine, store, request, options)
    for _ in job.run(cancel):
        pass
    return job.result
