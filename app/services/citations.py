"""Citations checked before they are shown (pure logic, no engine).

An answer cites numbered passages as [1], [2]… and may quote them, “like this” right after (or
before) the number. A quote counts only when it is found verbatim in the cited passage, spaces
normalized; a quote that is not found is taken out of the answer and never shown as a citation:
the passage's own sentence that best matches the question is shown instead, marked as the passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARKER = re.compile(r"\[(\d{1,3})\]")
QUOTE = re.compile(r"[“\"«„]([^“”\"«»„]{4,600}?)[”\"»“]")
ATTACHED = 4  # most characters (spaces, a colon) between a number and its quote
MIN_QUOTE = 12  # shorter quotes prove nothing: the passage's sentence is shown instead
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")


@dataclass(frozen=True)
class Cited:
    """One citation of passage `number` (1-based): `quote` is verbatim in that passage when
    `verified`, else it is the passage's own sentence shown instead."""

    number: int
    quote: str
    verified: bool


@dataclass(frozen=True)
class CheckedAnswer:
    text: str  # the answer with quotes that were not found taken out
    cited: list[Cited]  # in order of first citation, each (number, quote) once


def normalized(text: str) -> str:
    return " ".join(text.split())


def found_in(quote: str, passage: str) -> bool:
    """The quote is in the passage word for word (spaces normalized) and long enough to prove it."""
    quote = normalized(quote).strip(" .,;:")
    return len(quote) >= MIN_QUOTE and quote in normalized(passage)


def words(text: str) -> set[str]:
    """The text's words of 3+ characters (every CJK character counts), lower case."""
    found = set(re.findall(r"[^\W\d_]{3,}|\d{2,}", text.lower()))
    return found | set(re.findall(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", text))


def sentences(passage: str) -> list[str]:
    """The passage's sentences (and lines), spaces normalized, Markdown list and heading marks dropped."""
    parts = (normalized(re.sub(r"^\s*(?:[-*+]|#{1,6}|\d+[.)])\s+", "", part)) for part in SENTENCE_END.split(passage))
    return [part for part in parts if len(part) >= 3]


def best_sentence(passage: str, about: str) -> str:
    """The passage's sentence sharing most words with `about` (the first one on a tie)."""
    wanted = words(about)
    candidates = sentences(passage) or [normalized(passage)]
    return max(candidates, key=lambda sentence: len(wanted & words(sentence)))


def check_answer(answer: str, passages: list[str], about: str = "") -> CheckedAnswer:
    """Check every [n] of `answer` against `passages[n - 1]`. Numbers out of range are left as
    text; a quote attached to a number stays only when found verbatim in that passage. A citation
    without a checked quote shows the passage's sentence closest to `about` and the answer's sentence."""
    quotes = list(QUOTE.finditer(answer))
    cited: list[Cited] = []
    invented: list[tuple[int, int]] = []
    for marker in MARKER.finditer(answer):
        number = int(marker.group(1))
        if not 1 <= number <= len(passages):
            continue
        passage = passages[number - 1]
        quote = _attached(quotes, marker)
        if quote is not None and found_in(quote.group(1), passage):
            entry = Cited(number, normalized(quote.group(1)), True)
        else:
            if quote is not None:
                invented.append(quote.span())
            entry = Cited(number, best_sentence(passage, f"{about} {_sentence_before(answer, marker.start())}"), False)
        if entry not in cited:
            cited.append(entry)
    return CheckedAnswer(_without(answer, invented), cited)


def _attached(quotes: list[re.Match], marker: re.Match) -> re.Match | None:
    """The quote right after the marker, else the one right before it."""
    for quote in quotes:
        between = quote.string[marker.end():quote.start()]
        if 0 <= quote.start() - marker.end() <= ATTACHED and not between.strip(" :,"):
            return quote
    for quote in quotes:
        between = quote.string[quote.end():marker.start()]
        if 0 <= marker.start() - quote.end() <= ATTACHED and not between.strip(" :,"):
            return quote
    return None


def _sentence_before(text: str, end: int) -> str:
    start = max((m.end() for m in SENTENCE_END.finditer(text, 0, end)), default=0)
    return text[start:end]


def _without(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in sorted(set(spans), reverse=True):
        text = text[:start].rstrip(" ") + (" " if end < len(text) and text[end:end + 1] not in " .,;:" else "") + text[end:]
    return text
