"""Markdown -> the pieces of text a translator may change; everything else is kept byte for byte.

markdown-it (CommonMark + tables + front matter) finds the structure. Only the inline text of
paragraphs, headings and table cells becomes a `Piece`; code blocks, HTML blocks, front matter,
link reference definitions, list and quote markers, table pipes and blank lines are never inside
one. Inside a piece, inline code, autolinks, inline HTML, hard line breaks and bare URLs
(linkify-it) are replaced by markers ⟦1⟧, ⟦2⟧ … that `fill` turns back into the exact source text.
A link or image is a pair of markers around its text, `⟦1⟧the manual⟦2⟧` for
`[the manual](https://…)`: the text is translated, the brackets and target are kept, and a pair
the model broke is put back whole (its source text) at the end, still a link. Pieces are found
from the parser's own positions: every inline rule that makes a kept span is wrapped to record
where it started and ended.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

from app.base.messages import Message

MARKER = "⟦{}⟧"
MARKER_RE = re.compile(r"⟦\s*(\d+)\s*⟧")
STRAY_RE = re.compile(r"⟦\s*\d*\s*\ufffd?|⟧")  # what is left of a marker the model broke
PARAGRAPH, HEADING, CELL, LINE = "paragraph", "heading", "cell", "line"
_SPANS = "nemo_kept_spans"  # env key: id(inline token list) -> [(start, end, kind)]
KEPT, BREAK, OPEN, CLOSE = "kept", "break", "open", "close"  # kinds of kept span: a link's are OPEN and CLOSE


@dataclass(frozen=True)
class Piece:
    """`source[start:end]` is replaced by the translation of `text`, one line with ⟦n⟧ markers."""

    start: int
    end: int
    text: str
    kept: tuple[str, ...]  # the exact source text of ⟦1⟧, ⟦2⟧, …
    where: str  # paragraph | heading | cell | line: how a translation must be escaped
    breaks: frozenset[int] = frozenset()  # markers that stand for hard line breaks
    links: tuple[tuple[int, int, str], ...] = ()  # (opening marker, closing marker, the link's source text)


def normalize(text: str) -> str:
    """Line ends as markdown-it sees them; positions in pieces refer to this text."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")


# -- finding pieces ------------------------------------------------------------------------------


@cache
def _parser():
    from markdown_it import MarkdownIt
    from markdown_it.rules_inline import autolink, backtick, escape, html_inline, image, link, newline
    from mdit_py_plugins.front_matter import front_matter_plugin

    md = MarkdownIt("commonmark").enable(["table", "strikethrough"]).use(front_matter_plugin)
    md.core.ruler.disable("inline")  # blocks only; `markdown_pieces` parses each inline itself
    rules = {"backticks": backtick, "autolink": autolink, "html_inline": html_inline, "link": link,
             "image": image, "newline": newline, "escape": escape}
    for name, rule in rules.items():
        md.inline.ruler.at(name, _recording(rule))
    return md


def _recording(rule):
    """Wrap an inline rule so that the source span of what must be kept is recorded."""
    from markdown_it.helpers import parseLinkLabel

    def record(state, silent: bool) -> bool:
        start = state.pos
        label_end = -1
        if rule.__name__ in ("link", "image") and not silent:
            label_end = parseLinkLabel(state, start + (rule.__name__ == "image"), rule.__name__ == "link")
        if not rule(state, silent):
            return False
        if silent:
            return True
        spans = state.env.setdefault(_SPANS, {}).setdefault(id(state.tokens), [])
        last = state.tokens[-1].type if state.tokens else ""
        if rule.__name__ in ("newline", "escape"):
            if last == "hardbreak":
                while start > 0 and state.src[start - 1] == " ":
                    start -= 1
                spans.append((start, state.pos, BREAK))
        elif rule.__name__ in ("link", "image"):
            target = state.src[label_end + 1 : state.pos]
            if target in ("", "[]"):  # a shortcut reference ([text] or [text][]) is its own key: keep it whole
                spans.append((start, state.pos, KEPT))
            else:  # `[` or `![`, and `](target)`: the text between them is translated
                spans += [(start, start + 1 + (rule.__name__ == "image"), OPEN), (label_end, state.pos, CLOSE)]
        else:
            spans.append((start, state.pos, KEPT))
        return True

    return record


def markdown_pieces(source: str) -> list[Piece]:
    """The translatable pieces of a normalized Markdown text, in order."""
    env: dict = {}
    tokens = _parser().parse(source, env)
    lines = source.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    pieces = []
    row_cursor: dict[int, int] = {}
    for before, token in itertools.pairwise(tokens):
        if token.type != "inline" or not token.map or not token.content.strip():
            continue
        where = {"th_open": CELL, "td_open": CELL, "heading_open": HEADING}.get(before.type, PARAGRAPH)
        if where == HEADING and not before.markup.startswith("#"):
            where = PARAGRAPH  # a setext heading's text is laid out like a paragraph
        located = _locate(token, before, where, lines, row_cursor)
        if located is None:
            continue  # the text could not be found in the source as it is: keep it unchanged
        content, columns = located
        piece = _piece(source, content, columns, offsets, token.map[0], _kept_spans(content, env), where)
        if piece is not None:
            pieces.append(piece)
    return pieces


def _kept_spans(content: str, env: dict) -> list[tuple[int, int, str]]:
    """Parse one inline text; the spans its wrapped rules recorded (nested parses left out)."""
    env[_SPANS] = {}
    tokens: list = []
    _parser().inline.parse(content, _parser(), env, tokens)
    return env[_SPANS].get(id(tokens), [])


def _locate(token, before, where: str, lines: list[str], row_cursor: dict[int, int]):
    """(inline text as written in the source, the column where each of its lines starts), or None."""
    first = token.map[0]
    line = lines[first]
    if where == CELL:  # the parser unescapes \| in cells: look for the text as written
        for content in (token.content, token.content.replace("|", "\\|")):
            column = line.find(content, row_cursor.get(first, 0))
            if column >= 0:
                row_cursor[first] = column + len(content)
                return content, [column]
        return None
    if where == HEADING:
        column = line.find(token.content, line.find(before.markup) + len(before.markup))
        return (token.content, [column]) if column >= 0 else None
    columns = []
    content = token.content.split("\n")
    for k, text in enumerate(content):
        line = lines[first + k]
        if k == len(content) - 1:
            line = line.rstrip()
        if not line.endswith(text):
            return None
        columns.append(len(line) - len(text))
    return token.content, columns


def _piece(source: str, content: str, columns: list[int], offsets: list[int], first: int,
           spans: list[tuple[int, int, str]], where: str) -> Piece | None:
    """A Piece from inline content, its source columns and the kept spans inside it."""
    starts = [0]
    for line in content.split("\n")[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def at(c: int) -> int:  # content offset -> source offset
        k = bisect.bisect_right(starts, c) - 1
        return offsets[first + k] + columns[k] + c - starts[k]

    kept_spans = _outermost(spans + [(a, b, KEPT) for a, b in _bare_urls(content, spans)])
    text, kept, breaks, links, opened, position = [], [], set(), [], [], 0
    for a, b, kind in kept_spans:
        text.append(_one_line(content[position:a]))
        kept.append(source[at(a) : at(b)])
        if kind == BREAK:
            breaks.add(len(kept))
        elif kind == OPEN:
            opened.append((len(kept), a))
        elif kind == CLOSE and opened:
            opening, link_start = opened.pop()
            links.append((opening, len(kept), source[at(link_start) : at(b)]))
        text.append(MARKER.format(len(kept)))
        position = b
    text.append(_one_line(content[position:]))
    model_text = "".join(text).strip()
    if not any(c.isalpha() for c in MARKER_RE.sub("", model_text)):
        return None  # numbers, punctuation or kept spans only: nothing to translate
    return Piece(at(0), at(len(content)), model_text, tuple(kept), where, frozenset(breaks), tuple(sorted(links)))


def _outermost(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans sorted, those inside another span dropped."""
    out: list[tuple[int, int, str]] = []
    for span in sorted(spans, key=lambda s: (s[0], -s[1])):
        if not out or span[0] >= out[-1][1]:
            out.append(span)
    return out


def _bare_urls(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """URLs and e-mail addresses written as plain text (outside the recorded spans)."""
    found = []
    for match in _linkify().match(text) or []:
        if not any(a <= match.index < b for a, b, _ in spans):
            found.append((match.index, match.last_index))
    return found


@cache
def _linkify():
    from linkify_it import LinkifyIt

    return LinkifyIt()


def _one_line(text: str) -> str:
    return re.sub(r"[ \t]*\n[ \t]*", " ", text)


def text_pieces(source: str) -> list[Piece]:
    """Plain text: every non-blank line is a piece; bare URLs and e-mail addresses are kept."""
    pieces, offset = [], 0
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped:
            start = offset + line.index(stripped)
            piece = _piece(source, stripped, [start - offset], [offset], 0, [], LINE)
            if piece is not None:
                pieces.append(piece)
        offset += len(line) + 1
    return pieces


# -- putting translations back -------------------------------------------------------------------


def fill(piece: Piece, translation: str) -> tuple[str, list[Message]]:
    """The translation with markers turned back into source text, escaped for where it goes.

    Returns (text, problems: Messages for the faces to word). A marker the model dropped is put back at the end (a dropped line
    break becomes a space); one it repeated is used once. A link whose pair of markers the model
    dropped, swapped or left empty is put back whole, as written in the source, at the end. An
    empty translation keeps the source.
    """
    text = _one_line(translation.strip())
    if "\ufffd" not in piece.text:
        text = text.replace("\ufffd", "")  # half a character: the reply was cut inside it
    if not MARKER_RE.sub("", text).strip():
        return "", [Message("translate_no_translation", text=_short(piece.text))]
    broken = _broken_links(piece, text)
    inside_broken = {n for first, last, _ in broken for n in range(first, last + 1)}
    problems: list[Message] = []
    used: set[int] = set()
    parts, position = [], 0
    for match in MARKER_RE.finditer(text):
        parts.append(_escape(text[position : match.start()], piece.where))
        n = int(match.group(1))
        if 1 <= n <= len(piece.kept) and n not in used and n not in inside_broken:
            used.add(n)
            parts.append("\0" + str(n) + "\0")
        position = match.end()
    parts.append(_escape(text[position:], piece.where))
    parts = [STRAY_RE.sub("", part) if part[:1] != "\0" else part for part in parts]
    for n in range(1, len(piece.kept) + 1):
        if n not in used and n not in piece.breaks and n not in inside_broken:
            parts.append(" \0" + str(n) + "\0")
            problems.append(Message("translate_marker_misplaced", kept=_short(piece.kept[n - 1])))
    for k, (_, _, link) in enumerate(broken):
        parts.append(f" \0L{k}\0")
        problems.append(Message("translate_link_misplaced", link=_short(link)))
    joined = re.sub(r" {2,}", " ", "".join(parts)).strip()
    if piece.where == PARAGRAPH:  # each line (hard breaks start new ones) must stay inside the paragraph
        breaks = "|".join(map(str, piece.breaks))
        lines = re.split(f"(\0(?:{breaks})\0)", joined) if piece.breaks else [joined]
        joined = "".join(line if i % 2 else _as_paragraph(line.strip()) for i, line in enumerate(lines))
    return re.sub("\0(L?)(\\d+)\0", lambda m: broken[int(m.group(2))][2] if m.group(1)
                  else piece.kept[int(m.group(2)) - 1], joined), problems


def _broken_links(piece: Piece, text: str) -> list[tuple[int, int, str]]:
    """The outermost links of `piece` whose markers are not in `text` in order around some text."""
    found: dict[int, re.Match] = {}
    for match in MARKER_RE.finditer(text):
        found.setdefault(int(match.group(1)), match)
    broken: list[tuple[int, int, str]] = []
    for first, last, link in piece.links:
        if broken and first <= broken[-1][1]:
            continue  # inside a broken link: put back with it
        opening, closing = found.get(first), found.get(last)
        if not (opening and closing and opening.end() <= closing.start()
                and text[opening.end() : closing.start()].strip()):
            broken.append((first, last, link))
    return broken


def _escape(text: str, where: str) -> str:
    """Model text made safe where it goes: table cells get their pipes escaped."""
    return re.sub(r"(?<!\\)\|", r"\\|", text) if where == CELL else text


def _as_paragraph(text: str) -> str:
    """Escape a leading character that would turn this line into a heading, list, quote, …"""
    if _is_paragraph(text):
        return text
    lead = re.match(r"\s*(\d{1,9}(?=[.)])|[!-/:-@\[-`{-~])", text)
    if lead and lead.group(1).isdigit():
        return text[: lead.end()] + "\\" + text[lead.end() :]
    if lead:
        return text[: lead.start(1)] + "\\" + text[lead.start(1) :]
    return text


def _is_paragraph(text: str) -> bool:
    tokens = _parser().parse(text.replace("\0", "x"))
    return [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def assemble(source: str, replacements: list[tuple[int, int, str]], start: int = 0, end: int | None = None) -> str:
    """`source[start:end]` with each (piece start, piece end, text), in order, put in its place."""
    end = len(source) if end is None else end
    out, position = [], start
    for a, b, text in replacements:
        out += [source[position:a], text]
        position = b
    out.append(source[position:end])
    return "".join(out)


# -- structure ------------------------------------------------------------------------------------

OUTLINE_TYPES = ("front_matter", "heading_open", "bullet_list_open", "ordered_list_open", "list_item_open",
                 "table_open", "tr_open", "blockquote_open", "fence", "code_block", "html_block", "hr")


def outline(markdown: str) -> Counter:
    """How many headings, list items, table rows, code blocks, … and blank-line separated blocks."""
    counts = Counter(t.type for t in _parser().parse(normalize(markdown)) if t.type in OUTLINE_TYPES)
    counts["blocks"] = len([b for b in re.split(r"\n[ \t]*\n", normalize(markdown)) if b.strip()])
    return counts
