"""The locale files (`locales/*.json`, NeMo's 11 languages) and the words made from them, without
gradio: for the page (`i18n`) and the terminal (`terminal_language`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.base.errors import UserError
from app.base.messages import Message, isolated

LOCALES = Path(__file__).resolve().parent / "locales"
LANGUAGES = {  # code: the language's own name
    "en": "English", "fr": "Français", "de": "Deutsch", "es": "Español", "it": "Italiano", "pt": "Português",
    "zh": "中文", "ja": "日本語", "ko": "한국어", "ar": "العربية", "hi": "हिन्दी",
}


def _load(code: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{code}.json").read_text(encoding="utf-8"))


CATALOG: dict[str, dict[str, str]] = {code: _load(code) for code in LANGUAGES}
RIGHT_TO_LEFT = ("ar",)


def text(language: str, key: str, /, *, isolate: bool = False, **values) -> str:
    """The text of `key` in `language` (English where that locale lacks it), `{names}` filled; a
    value that is a Message or a UserError (what the services say) is worded in `language` too.
    `isolate`: each plain value keeps its own direction (a right-to-left page; see `isolated`)."""
    template = CATALOG.get(language, {}).get(key) or CATALOG["en"][key]
    if not values:
        return template
    return template.format(**{name: words(language, value, isolate) if isinstance(value, (Message, UserError))
                              else isolated(value) if isolate else value for name, value in values.items()})


def words(language: str, said, isolate: bool = False):
    """A Message or a UserError in `language`; anything else as it is."""
    if isinstance(said, UserError):
        said = said.message
    if isinstance(said, Message):
        return said.words(CATALOG.get(language, {}), CATALOG["en"], isolate)
    return said


def terminal_language() -> str:
    """The terminal's language: `LC_ALL`, `LC_MESSAGES` or `LANG` ('ja_JP.UTF-8' → 'ja') where it
    is one of ours, else English."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            code = value.split("_")[0].split(".")[0].lower()
            return code if code in LANGUAGES else "en"
    return "en"


def terminal_text(key: str, /, **values) -> str:
    """The text of `key` in the terminal's language, for the command line; values that are Messages
    or UserErrors worded alike."""
    return text(terminal_language(), key, **values)
