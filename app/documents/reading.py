"""Files -> Markdown with page/section positions and metadata; token-aware chunking.

All of the reading runs in a child process with a time, memory and page limit (parse_limits.py):
parsing, Markdown blocks, chunks and token counts, a window of text at a time, so its memory
grows with the text's size and no faster; the parent gets the Markdown and the chunks. PDF text
layers come from pypdf, DOCX goes through mammoth to HTML, HTML is cleaned with
BeautifulSoup (scripts and styles dropped, nothing is ever run) and turned into Markdown by
markdownify. Text encodings are proposed by BeautifulSoup's EncodingDetector (BOM, declared
charset, chardet). Markdown blocks are found by markdown-it. Bad input raises one UserError that names
the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import unicodedata
import zipfile
from dataclasses import replace
from functools import partial
from itertools import islice
from pathlib import Path, PurePath
from typing import Callable, Iterable, Iterator

from app.base.config import Settings
from app.base.errors import UserError
from app.base.messages import Message
from app.base.jobs import CancelToken
from app.documents.language import detect_language
from app.documents.parse_limits import over_page_limit, parse_in_child
from app.storage.document_store import Chunk, Document

KINDS = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html", ".md": "markdown",
         ".markdown": "markdown", ".txt": "text", ".text": "text"}
DEFAULT_MAX_BYTES = 100 * 2**20
MAX_UNPACKED_BYTES = 256 * 2**20  # a .docx that unpacks to more is refused
MAX_PACK_RATIO = 100  # ... and so is one that unpacks to over 100x its size (beyond a few MB)
STORE_CHUNK_TOKENS = 256  # stored chunks: small enough to pick relevant passages for a chat
TOKENIZER = "Tekken"  # what counts a document's stored tokens (NeMo's vocabulary, whatever model is loaded)
WINDOW_CHARS = 256 * 1024  # the child reads Markdown blocks and counts tokens this much text at a time
DROPPED_HTML = ["script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "canvas",
                "head", "form"]
DOCX_STYLES = "p[style-name='Title'] => h1:fresh\np[style-name='Subtitle'] => h2:fresh"

CountTokens = Callable[[str], int]

logging.getLogger("pypdf").addHandler(logging.NullHandler())  # damaged files: our one line, not pypdf's


def safe_name(name: str) -> str:
    """A display name: the last path component, NFC, no control characters, at most 200 characters."""
    name = unicodedata.normalize("NFC", str(name))
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    if len(name) > 200:
        suffix = PurePath(name).suffix[:20]
        name = name[: 200 - len(suffix)] + suffix
    return name or "document"


def file_kind(name: str) -> str:
    """'pdf', 'docx', 'html', 'markdown' or 'text', from the name; UserError for anything else."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in KINDS:
        raise UserError("doc_unsupported_type", name=name, suffix=suffix or Message("doc_no_extension"))
    return KINDS[suffix]


def read_document(path: str | Path, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, *,
                  timeout_s: float | None = None, memory_mb: int | None = None, max_pages: int | None = None,
                  cancel: CancelToken | None = None) -> Document:
    """Read, check and convert one file; `name` is the name the user gave it (default: the path's).

    The file is parsed in a child process (parse_limits.py) within `timeout_s` seconds, `memory_mb` MiB
    and, for a PDF, `max_pages` pages (each None: the Settings default); `cancel` stops it (Cancelled).
    """
    name = safe_name(name or Path(path).name)
    kind = file_kind(name)
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise UserError("doc_over_upload_limit", name=name, mb=f"{size / 2**20:,.1f}",
                                limit_mb=f"{max_bytes / 2**20:,.0f}")
        sha256, blank = _fingerprint(Path(path))
    except FileNotFoundError:
        raise UserError("doc_not_found", name=name) from None
    except OSError as exc:
        raise UserError("doc_cannot_read", name=name, reason=exc.strerror) from None
    if blank:
        raise UserError("doc_empty", name=name)
    defaults = Settings()
    parsed = parse_in_child(
        kind, Path(path), name, cancel=cancel,
        timeout_s=defaults.parse_timeout_s if timeout_s is None else timeout_s,
        memory_mb=defaults.parse_memory_mb if memory_mb is None else memory_mb,
        max_pages=defaults.parse_max_pages if max_pages is None else max_pages)
    return Document(
        sha256=sha256, file_name=name, kind=kind,
        title=" ".join((parsed.title or "")[:1000].split())[:200] or PurePath(name).stem or name,
        pages=parsed.pages, language=detect_language(parsed.markdown), tokens=parsed.tokens,
        markdown=parsed.markdown, chunks=parsed.chunks,
    )


def _fingerprint(path: Path) -> tuple[str, bool]:
    """The file's SHA-256 and whether it holds only white space, read a block at a time."""
    digest, blank = hashlib.sha256(), True
    with path.open("rb") as handle:
        while block := handle.read(2**20):
            digest.update(block)
            blank = blank and not block.strip()
    return digest.hexdigest(), blank


def read_parts(title: str, pages: int | None, parts: list[Chunk], name: str, count: CountTokens) -> Iterator[dict]:
    """What the child sends for a file read into `parts`: its chunks one by one, then its Markdown
    a window at a time, then the totals; each a small JSON-ready dict."""
    markdown = "\n\n".join(part.text for part in parts).strip()
    if not markdown:
        raise UserError("doc_no_text", name=name)
    for piece in page_chunks(markdown_blocks(parts), STORE_CHUNK_TOKENS, count):
        yield {"chunk": {"text": piece.text, "tokens": piece.tokens, "page_start": piece.page_start,
                         "page_end": piece.page_end, "section": piece.section}}
    parts.clear()  # what is left to send is the Markdown
    for start in range(0, len(markdown), WINDOW_CHARS):
        yield {"markdown": markdown[start : start + WINDOW_CHARS]}
    yield {"done": {"title": title or "", "pages": pages, "tokens": count_tokens(markdown, count)}}


# -- readers: bytes -> (title, pages, parts) ------------------------------------------------------


def _read_pdf(data: bytes, name: str, max_pages: int = 0):
    """A PDF's text layer, page by page; more than `max_pages` pages (when > 0) are refused unread."""
    from pypdf import PdfReader

    if b"%PDF-" not in data[:1024]:
        raise UserError("doc_not_pdf", name=name)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _unlocks(reader):
            raise UserError("doc_pdf_encrypted", name=name)
        if max_pages > 0 and len(reader.pages) > max_pages:
            raise over_page_limit(name, len(reader.pages), max_pages)
        texts = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (UserError, MemoryError):  # a MemoryError is the memory limit (parse_limits.py)
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        raise UserError("doc_pdf_damaged", name=name, error=type(exc).__name__) from None
    if not any(text.strip() for text in texts):
        raise UserError("doc_pdf_no_text_layer", name=name)
    parts = [Chunk(_pdf_paragraphs(text), page_start=n, page_end=n) for n, text in enumerate(texts, 1) if text.strip()]
    return title, len(texts), parts


def _unlocks(reader) -> bool:
    """Whether an encrypted PDF opens without a password (an owner password only)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # e.g. AES without the optional crypto dependency
        return False


def _pdf_paragraphs(text: str) -> str:
    """A page's text layer as paragraphs: hyphenated line ends joined, a line ending a sentence ends one."""
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text.replace("\r\n", "\n"))
    text = re.sub(r"(?<![.!?:。！？])[ \t]*\n(?=[^\n])", " ", text)
    return re.sub(r"\n+", "\n\n", text).strip()


def _read_docx(data: bytes, name: str):
    import mammoth

    _check_zip(data, name)
    try:
        html = mammoth.convert_to_html(io.BytesIO(data), style_map=DOCX_STYLES).value
    except (KeyError, OSError):  # mammoth: "Could not find main document part"
        raise UserError("doc_docx_no_main_part", name=name) from None
    except MemoryError:
        raise
    except Exception as exc:
        raise UserError("doc_docx_damaged", name=name, error=type(exc).__name__) from None
    return _html_to_parts(html)


def _check_zip(data: bytes, name: str) -> None:
    """Refuse what is not a zip archive and archives that unpack to far more than their size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise UserError("doc_docx_not_zip", name=name) from None
    unpacked = sum(m.file_size for m in members)
    if unpacked > MAX_UNPACKED_BYTES or (unpacked > 8 * 2**20 and unpacked > MAX_PACK_RATIO * len(data)):
        raise UserError("doc_zip_bomb", name=name, mb=f"{unpacked / 2**20:,.0f}")


def _read_html(data: bytes, name: str):
    return _html_to_parts(_decode_text(data, name, html=True))


def _html_to_parts(html: str):
    """HTML -> (title, None, [Markdown]); scripts, styles, forms and embedded objects are dropped."""
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text() if soup.title else ""
    for tag in soup(DROPPED_HTML):
        tag.decompose()
    first_heading = soup.find(["h1", "h2"])
    converter = MarkdownConverter(heading_style="ATX", bullets="-", strip=["a", "img"], table_infer_header=True)
    markdown = re.sub(r"\n{3,}", "\n\n", converter.convert_soup(soup)).strip()
    return title.strip() or (first_heading.get_text() if first_heading else ""), None, [Chunk(markdown)]


def _read_markdown(data: bytes, name: str):
    text = _decode_text(data, name)
    heading = re.search(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", text, re.MULTILINE)
    return (heading.group(1) if heading else ""), None, [Chunk(text)]


def _read_text(data: bytes, name: str):
    return "", None, [Chunk(_decode_text(data, name))]


def _decode_text(data: bytes, name: str, html: bool = False) -> str:
    """Text in any common encoding: BOM, declared charset (HTML), chardet's guess, UTF-8, Windows-1252,
    as BeautifulSoup's EncodingDetector proposes them. Binary data is refused."""
    from bs4.dammit import EncodingDetector

    detector = EncodingDetector(data, is_html=html)
    text = next((t for t in map(partial(_decode, detector.markup), detector.encodings) if t is not None), "")
    allowed = len(text) // 100
    controls = sum(1 for _ in islice(_CONTROLS.finditer(text), allowed + 1))
    if not text or controls > allowed:
        raise UserError("doc_binary", name=name)
    return text.replace("\r\n", "\n").replace("\r", "\n")


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # Unicode's Cc but \t \n \f \r


def _decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


READERS = {"pdf": _read_pdf, "docx": _read_docx, "html": _read_html, "markdown": _read_markdown,
           "text": _read_text}


# -- blocks and chunks (run in the child, a window of text at a time) ---------------------------------


def text_windows(text: str, size: int = WINDOW_CHARS) -> Iterator[str]:
    """Consecutive pieces of a Markdown text of about `size` characters (at most 4x), cut at a blank
    line outside code fences where there is one, else at a line end, a space, or anywhere."""
    start, fence, scanned = 0, None, 0
    while len(text) - start > size:
        low, high, end = start + size, start + 4 * size, None
        for blank in _BLANK.finditer(text, low, high):
            fence = _fence_at(text, scanned, blank.start(), fence)
            scanned = blank.start()
            if fence is None:
                end = blank.end()
                break
        if end is None:
            end = next((i + 1 for i in (text.find(c, low, high) for c in "\n ") if i >= 0), low)
            fence, scanned = _fence_at(text, scanned, end, fence), end
        yield text[start:end]
        start = end
    yield text[start:]


_BLANK = re.compile(r"\n[ \t]*\n")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n]*)", re.MULTILINE)


def _fence_at(text: str, start: int, end: int, fence: tuple[str, int] | None) -> tuple[str, int] | None:
    """The code fence open at `end` (its character and length, None outside), given the one at `start`."""
    for line in _FENCE.finditer(text, start, end):
        marker, info = line.group(1), line.group(2)
        if fence is None:
            fence = None if marker[0] == "`" and "`" in info else (marker[0], len(marker))
        elif marker[0] == fence[0] and len(marker) >= fence[1] and not info.strip():
            fence = None
    return fence


def markdown_blocks(parts: Iterable[Chunk]) -> Iterator[Chunk]:
    """Top-level Markdown blocks (paragraph, list, table, code) with their page and heading path,
    a window of each part's text at a time.

    A heading is kept with the block after it, so no chunk ends on a lone heading.
    """
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table").disable(["inline", "text_join"])  # blocks only
    path: list[tuple[int, str]] = []
    for part in parts:
        heading = ""
        for window in text_windows(part.text):
            lines = window.split("\n")
            tokens = parser.parse(window)
            for i, token in enumerate(tokens):
                if token.level != 0 or not token.map or token.nesting < 0:
                    continue
                text = "\n".join(lines[token.map[0] : token.map[1]]).strip()
                if token.type == "heading_open":
                    depth = int(token.tag[1:])
                    path = [p for p in path if p[0] < depth] + [(depth, tokens[i + 1].content.strip())]
                    heading = f"{heading}\n\n{text}".strip()
                    continue
                section = " › ".join(title for _, title in path)
                yield replace(part, text=f"{heading}\n\n{text}".strip(), section=section)
                heading = ""
        if heading:
            yield replace(part, text=heading, section=" › ".join(title for _, title in path))


def count_tokens(text: str, count: CountTokens, size: int = WINDOW_CHARS) -> int:
    """`count(text)` a window at a time: cut after a letter or digit before a space, where NeMo's
    pre-tokenizer cuts too, so the sum is exact (a text with no such place is cut anywhere)."""
    total, start = 0, 0
    while start < len(text):
        end = start + size
        if end < len(text):
            cut = _TOKEN_CUT.search(text, end, end + 4 * size)
            end = cut.end() if cut else end + 4 * size
        total += count(text[start:end])
        start = end
    return total


_TOKEN_CUT = re.compile(r"(?<=[^\W_])(?=\s)")
_SPLITS = [
    re.compile(r"(?<=\n\n)(?=[^\n])"),  # paragraphs
    re.compile(r"(?<=\n)(?=[^\n])"),  # lines
    re.compile(r"(?<=[.!?…]\s)(?=\S)|(?<=[.!?…][)\"'»”’]\s)(?=\S)|(?<=[。！？])"),  # sentences
    re.compile(r"(?<=\s)(?=\S)"),  # words
]


def split_text(text: str, max_tokens: int, count: CountTokens, level: int = 0) -> list[str]:
    """Cut text into pieces of at most `max_tokens` at the coarsest natural boundary that works.

    Pieces joined give the text back; a cut falls inside a word only for a "word" longer than
    `max_tokens` on its own.
    """
    if count(text) <= max_tokens:
        return [text]
    if level == len(_SPLITS):
        step = max(1, max_tokens // 4)  # a character is at most 4 byte-level tokens
        return [text[i : i + step] for i in range(0, len(text), step)]
    pieces = [p for p in _SPLITS[level].split(text) if p]
    if len(pieces) == 1:
        return split_text(text, max_tokens, count, level + 1)
    small = [s for piece in pieces for s in split_text(piece, max_tokens, count, level + 1)]
    return ["".join(group) for group in _greedy([(s, count(s)) for s in small], max_tokens, 0)]


def _greedy(items: Iterable[tuple], max_tokens: int, separator_tokens: int,
            ends_run: Callable[[list, object, int], bool] = lambda run, item, size: False) -> Iterator[list]:
    """Consecutive (item, tokens) pairs packed into runs of at most `max_tokens`, each run given
    once it is complete."""
    run: list = []
    size = 0
    for item, tokens in items:
        if run and size + separator_tokens + tokens <= max_tokens and not ends_run(run, item, size):
            run.append(item)
            size += separator_tokens + tokens
        else:
            if run:
                yield run
            run, size = [item], tokens
    if run:
        yield run


def _runs(pieces: Iterable[Chunk], max_tokens: int, count: CountTokens, page_ends_run: bool) -> Iterator[list[Chunk]]:
    """Consecutive pieces grouped into runs of at most `max_tokens`; too large pieces are split first.

    A run ends early at a new section when it is already half full, so sections stay together
    (and at a new page, when `page_ends_run`).
    """
    def ends(run: list[Chunk], piece: Chunk, size: int) -> bool:
        new_page = page_ends_run and piece.page_start != run[-1].page_start
        return new_page or (piece.section != run[-1].section and size >= max_tokens // 2)

    return _greedy(((p, p.tokens) for p in _fitting(pieces, max_tokens, count)), max_tokens, 1, ends)


def pack(pieces: list[Chunk], max_tokens: int, count: CountTokens) -> list[list[Chunk]]:
    """Consecutive pieces grouped into runs of at most `max_tokens` (see `_runs`)."""
    return list(_runs(pieces, max_tokens, count, page_ends_run=False))


def _fitting(pieces: Iterable[Chunk], max_tokens: int, count: CountTokens) -> Iterator[Chunk]:
    """Pieces recounted with `count`, those over `max_tokens` split at natural boundaries."""
    for piece in pieces:
        tokens = count(piece.text)
        if tokens <= max_tokens:
            yield replace(piece, tokens=tokens)
            continue
        for text in split_text(piece.text, max_tokens, count):
            if text.strip():
                yield replace(piece, text=text.strip(), tokens=count(text.strip()))


def merge(group: list[Chunk], count: CountTokens) -> Chunk:
    """One chunk from consecutive pieces, blank-line separated, spanning their pages."""
    text = "\n\n".join(piece.text for piece in group)
    pages = [p for piece in group for p in (piece.page_start, piece.page_end) if p is not None]
    return Chunk(text, count(text), min(pages, default=None), max(pages, default=None), group[0].section)


def group_texts(texts: list[str], max_tokens: int, count: CountTokens) -> list[list[str]]:
    """Consecutive texts grouped into runs of at most `max_tokens` (each text fits on its own)."""
    return [[piece.text for piece in run] for run in pack([Chunk(text) for text in texts], max_tokens, count)]


def chunk(pieces: Iterable[Chunk], max_tokens: int, count: CountTokens) -> list[Chunk]:
    """Token-aware chunks of at most about `max_tokens`, cut at section, paragraph, sentence or word."""
    return [merge(group, count) for group in _runs(pieces, max_tokens, count, page_ends_run=False)]


def page_chunks(pieces: Iterable[Chunk], max_tokens: int, count: CountTokens) -> Iterator[Chunk]:
    """`chunk` over a stream of pieces, each chunk given once complete; a chunk never spans pages."""
    return (merge(group, count) for group in _runs(pieces, max_tokens, count, page_ends_run=True))
