"""A translation glossary: term pairs from a table or a CSV file, and which of them a text uses.

A source term matches whole words (ignoring case) except in Chinese, Japanese and Korean, where
words are not separated by spaces.
"""

from __future__ import annotations

import csv
import io
import re

from app.base.errors import UserError

Glossary = tuple[tuple[str, str], ...]


def glossary_from_rows(rows) -> Glossary:
    """Term pairs from table rows (source, target); blank and header rows are skipped."""
    pairs: dict[str, str] = {}
    for row in rows or []:
        cells = [str(c).strip() if c is not None else "" for c in list(row)[:2]] + ["", ""]
        source, target = cells[0], cells[1]
        if source and target and (source.lower(), target.lower()) != ("source", "target"):
            pairs.setdefault(source, target)
    return tuple(pairs.items())


def read_glossary(path: str) -> Glossary:
    """A CSV file of `source,target` rows (a header row is optional)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise UserError("doc_not_found", name=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError("glossary_cannot_read", name=path, reason=str(exc)) from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if any(len([c for c in row if c.strip()]) not in (0, 2) for row in rows):
        raise UserError("glossary_two_columns", name=path)
    return glossary_from_rows(rows)


def term_in(term: str, text: str) -> bool:
    """Whether `term` occurs in `text`, ignoring case; a word-like term must start a word."""
    escaped = re.escape(term)
    pattern = rf"(?<!\w){escaped}" if re.match(r"\w", term) and not _unspaced(term) else escaped
    return re.search(pattern, text, re.IGNORECASE) is not None


def _unspaced(text: str) -> bool:
    """Chinese, Japanese or Korean characters: words are not separated by spaces."""
    return any("\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in text)


def glossary_for(glossary: Glossary, text: str) -> Glossary:
    """The pairs whose source term occurs in `text`."""
    return tuple(pair for pair in glossary if term_in(pair[0], text))
