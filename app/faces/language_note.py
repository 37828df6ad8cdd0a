"""The warning shown on a result the model wrote in another language than the one asked for."""

from __future__ import annotations

from app.documents.language import LanguageCheck
from app.faces.i18n import LANGUAGES, text
from app.services.translate import language_label

WARNINGS = {"summary": "note_summary_language", "translation": "note_translation_language"}  # locale keys


def language_name(code: str, language: str = "en") -> str:
    """`code`'s name in `language`: from the locale files for NeMo's 11, else the English name."""
    return text(language, f"language_{code}") if code in LANGUAGES else language_label(code)


def language_warning(check: LanguageCheck | None, what: str, language: str = "en") -> str:
    """'' when `check` passed; else '⚠️ The translation reads as English, not French: …' for `what`
    ("summary" or "translation"), in `language`."""
    if check is None or check.matches:
        return ""
    return text(language, WARNINGS[what], found=language_name(check.found, language),
                wanted=language_name(check.wanted, language))
