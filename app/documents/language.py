"""Mistral NeMo's languages and a detector restricted to them (lingua)."""

from __future__ import annotations

from functools import cache

LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic",
    "hi": "Hindi",
}  # fmt: skip
DEFAULT_LANGUAGE = "en"
SAMPLE_CHARS = 2000  # characters taken from each of a few places in a long text


@cache
def _detector():
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in LANGUAGES]
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
