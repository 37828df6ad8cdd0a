"""Message keys: what the layers below the faces say instead of sentences.

A `Message` is a key of the locale files (`app/faces/locales/*.json`) and the values its text is
filled with; a value may itself be a Message (a reason inside a sentence). The faces turn it into
words in the page's or the terminal's language (`app.faces.i18n.text`); `str()` gives the English
text from `en.json`, read here by path (the base layer imports nothing above it), for logs and for
callers that still print errors as they are.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

LOCALES = Path(__file__).resolve().parent.parent / "faces" / "locales"


@functools.cache
def english() -> dict[str, str]:
    """en.json: key → English template."""
    return json.loads((LOCALES / "en.json").read_text(encoding="utf-8"))


class Message:
    """A locale key and its values; `str()` is the English text."""

    __slots__ = ("key", "values")

    def __init__(self, key: str, /, **values: Any) -> None:
        self.key, self.values = key, values

    def words(self, templates: dict[str, str], fallback: dict[str, str], isolate: bool = False) -> str:
        """The text from `templates` (a locale), else `fallback`, nested Messages worded alike; with
        `isolate` (a right-to-left page), each plain value keeps its own direction (`isolated`)."""
        template = templates.get(self.key) or fallback.get(self.key)
        if template is None:  # not a key: a sentence from code not yet converted
            return self.key
        values = {name: value.words(templates, fallback, isolate) if isinstance(value, Message)
                  else isolated(value) if isolate else value for name, value in self.values.items()}
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):  # values that do not fit the key (a garbled child's answer)
            return self.key

    def to_json(self) -> dict:
        """{"key": ..., "values": {...}}: what crosses a process boundary (nested Messages alike)."""
        return {"key": self.key, "values": {name: value.to_json() if isinstance(value, Message) else value
                                            for name, value in self.values.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Message:
        values = {name: cls.from_json(value) if isinstance(value, dict) and "key" in value else value
                  for name, value in dict(data.get("values") or {}).items()}
        return cls(str(data["key"]), **values)

    def __str__(self) -> str:
        return self.words(english(), {})

    def __repr__(self) -> str:
        return f"Message({self.key!r}, {self.values!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.key, self.values) == (other.key, other.values)

    def __hash__(self) -> int:
        return hash(self.key)


def isolated(value: Any) -> Any:
    """`value` between Unicode's first-strong isolate and its pop: in a right-to-left sentence "-1"
    stays "-1" and "0.2 GiB" stays in that order. Nothing to isolate in an empty value."""
    return f"\u2068{value}\u2069" if str(value) != "" else value
