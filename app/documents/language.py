"""Mistral NeMo's languages and a detector restricted to them (lingua); a check that a text the
model wrote is in the language it was asked for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic",
    "hi": "Hindi",
}  # fmt: skip
DEFAULT_LANGUAGE = "en"
SAMPLE_CHARS = 2000  # characters taken from each of a few places in a long text
CHECK_MIN_LETTERS = 12  # a shorter text is not checked: too little to tell its language
CLEAR_MARGIN = 2.0  # another language wins clearly when it is this many times as likely as the wanted one


@cache
def _detector(extra: str = ""):
    """NeMo's languages (and `extra`, another ISO 639-1 code the detector knows)."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    codes = dict.fromkeys([*LANGUAGES, *([extra] if extra else [])])
    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in codes]
    return LanguageDetectorBuilder.from_languages(*languages).build()


def _sample(text: str) -> str:
    """The start, middle and end of a long text: enough to decide, fast on a whole book."""
    if len(text) <= 3 * SAMPLE_CHARS:
        return text
    middle = len(text) // 2
    return "\n".join((text[:SAMPLE_CHARS], text[middle : middle + SAMPLE_CHARS], text[-SAMPLE_CHARS:]))


def detect_language(text: str) -> str:
    """The ISO 639-1 code of the NeMo language `text` is written in; English when unsure."""
    found = _detector().detect_language_of(_sample(text))
    return found.iso_code_639_1.name.lower() if found else DEFAULT_LANGUAGE


def language_name(code: str) -> str:
    """'fr' -> 'French'; an unknown code is returned as it is."""
    return LANGUAGES.get(code, code)


@dataclass(frozen=True)
class LanguageCheck:
    """The language a text was wanted in and the one it reads as ('' when too short to tell)."""

    wanted: str
    found: str

    @property
    def matches(self) -> bool:
        return self.found in ("", self.wanted)


def check_language(text: str, wanted: str) -> LanguageCheck:
    """Whether `text` is in the language `wanted` (an ISO 639-1 code): another language is `found`
    only when it is clearly more likely (CLEAR_MARGIN), so mixed text, names and code pass."""
    if len(re.findall(r"[^\W\d_]", text)) < CHECK_MIN_LETTERS:
        return LanguageCheck(wanted, "")
    detector = _detector("" if wanted in LANGUAGES else wanted)
    values = detector.compute_language_confidence_values(_sample(text))
    confidence = {value.language.iso_code_639_1.name.lower(): value.value for value in values}
    best = max(confidence, key=confidence.get)
    clearly = best != wanted and confidence[best] >= CLEAR_MARGIN * confidence.get(wanted, 0.0)
    return LanguageCheck(wanted, best if clearly else wanted)
