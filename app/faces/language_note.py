"""The warning shown on a result the model wrote in another language than the one asked for."""

from __future__ import annotations

from app.documents.language import LanguageCheck
from app.faces.i18n import text, words
from app.services.translate import language_said

WARNINGS = {"summary": "note_summary_language", "translation": "note_translation_language"}  # locale keys


def language_name(code: str, language: str = "en") -> str:
    """`code`'s name in `language`: NeMo's 11 named in the locale files, another language by its
    English name, said to be less supported in `language`."""
    return words(language, language_said(code))


def language_warning(check: LanguageCheck | None, what: str, language: str = "en") -> str:
    """'' when `check` passed; else '⚠️ The translation reads as English, not French: …' for `what`
    ("summary" or "translation"), in `language`."""
    if check is None or check.matches:
        return ""
    return text(language, WARNINGS[what], found=language_name(check.found, language),
                wanted=language_name(check.wanted, language))
