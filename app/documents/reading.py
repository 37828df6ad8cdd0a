"""Files -> Markdown with page/section positions and metadata; token-aware chunking.

Parsing runs in a child process with a time, memory and page limit (parse_limits.py). PDF text
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
from itertools import groupby
from pathlib import Path, PurePath
from typing import Callable

from app.base.config import Settings
from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.documents.language import detect_language
from app.documents.parse_limits import over_page_limit, parse_in_child
from app.nemo.tekken import Tekken
from app.storage.document_store import Chunk, Document

KINDS = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html", ".md": "markdown",
         ".markdown": "markdown", ".txt": "text", ".text": "text"}
ACCEPTED = "PDF, DOCX, HTML, Markdown or plain text"
DEFAULT_MAX_BYTES = 100 * 2**20
MAX_UNPACKED_BYTES = 256 * 2**20  # a .docx that unpacks to more is refused
MAX_PACK_RATIO = 100  # ... and so is one that unpacks to over 100x its size (beyond a few MB)
STORE_CHUNK_TOKENS = 256  # stored chunks: small enough to pick relevant passages for a chat
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
        raise UserError(f"{name}: unsupported file type {suffix or '(no extension)'}; use {ACCEPTED}")
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
            raise UserError(f"{name}: {size / 2**20:,.1f} MB is over the {max_bytes / 2**20:,.0f} MB upload limit")
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{name}: file not found") from None
    except OSError as exc:
        raise UserError(f"{name}: cannot read ({exc.strerror})") from None
    if not data.strip():
        raise UserError(f"{name}: the file is empty")
    defaults = Settings()
    title, pages, parts = parse_in_child(
        kind, data, name, cancel=cancel,
        timeout_s=defaults.parse_timeout_s if timeout_s is None else timeout_s,
        memory_mb=defaults.parse_memory_mb if memory_mb is None else memory_mb,
        max_pages=defaults.parse_max_pages if max_pages is None else max_pages)
    markdown = "\n\n".join(part.text for part in parts).strip()
    if not markdown:
        raise UserError(f"{name}: no text found")
    tekken = Tekken.default()
    return Document(
        sha256=hashlib.sha256(data).hexdigest(), file_name=name, kind=kind,
        title=" ".join((title or "").split())[:200] or PurePath(name).stem or name, pages=pages,
        language=detect_language(markdown), tokens=tekken.count(markdown), markdown=markdown,
        chunks=[c for _, page in groupby(markdown_blocks(parts), key=lambda block: block.page_start)
                for c in chunk(list(page), STORE_CHUNK_TOKENS, tekken.count)],  # a chunk never spans pages
    )


# -- readers: bytes -> (title, pages, parts) ------------------------------------------------------


def _read_pdf(data: bytes, name: str, max_pages: int = 0):
    """A PDF's text layer, page by page; more than `max_pages` pages (when > 0) are refused unread."""
    from pypdf import PdfReader

    if b"%PDF-" not in data[:1024]:
        raise UserError(f"{name}: not a PDF file")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _unlocks(reader):
            raise UserError(f"{name}: the PDF is encrypted (password protected); remove the password first")
        if max_pages > 0 and len(reader.pages) > max_pages:
            raise over_page_limit(name, len(reader.pages), max_pages)
        texts = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (UserError, MemoryError):  # a MemoryError is the memory limit (parse_limits.py)
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        raise UserError(f"{name}: cannot read this PDF ({type(exc).__name__})") from None
    if not any(text.strip() for text in texts):
        raise UserError(f"{name}: no text layer, OCR not supported")
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
        raise UserError(f"{name}: not a Word document (a zip without its main document part)") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise UserError(f"{name}: cannot read this .docx ({type(exc).__name__})") from None
    return _html_to_parts(html)


def _check_zip(data: bytes, name: str) -> None:
    """Refuse what is not a zip archive and archives that unpack to far more than their size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise UserError(f"{name}: not a valid .docx (not a zip archive)") from None
    unpacked = sum(m.file_size for m in members)
    if unpacked > MAX_UNPACKED_BYTES or (unpacked > 8 * 2**20 and unpacked > MAX_PACK_RATIO * len(data)):
        raise UserError(f"{name}: refused, it would unpack to {unpacked / 2**20:,.0f} MB (a zip bomb?)")


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
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\n\r\t\f")
    if not text or controls > len(text) // 100:
        raise UserError(f"{name}: not a text file (binary data)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


READERS = {"pdf": _read_pdf, "docx": _read_docx, "html": _read_html, "markdown": _read_markdown,
           "text": _read_text}


# -- blocks and chunks ----------------------------------------------------------------------------


def markdown_blocks(parts: list[Chunk]) -> list[Chunk]:
    """Top-level Markdown blocks (paragraph, list, table, code) with their page and heading path.

    A heading is kept with the block after it, so no chunk ends on a lone heading.
    """
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table")
    blocks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    for part in parts:
        lines = part.text.split("\n")
        tokens = parser.parse(part.text)
        heading = ""
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
            blocks.append(replace(part, text=f"{heading}\n\n{text}".strip(), section=section))
            heading = ""
        if heading:
            blocks.append(replace(part, text=heading, section=" › ".join(title for _, title in path)))
    return blocks


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


def _greedy(items: list[tuple], max_tokens: int, separator_tokens: int,
            ends_run: Callable[[list, object, int], bool] = lambda run, item, size: False) -> list[list]:
    """Consecutive (item, tokens) pairs packed into runs of at most `max_tokens`."""
    runs: list[list] = []
    size = 0
    for item, tokens in items:
        if runs and size + separator_tokens + tokens <= max_tokens and not ends_run(runs[-1], item, size):
            runs[-1].append(item)
            size += separator_tokens + tokens
        else:
            runs.append([item])
            size = tokens
    return runs


def pack(pieces: list[Chunk], max_tokens: int, count: CountTokens) -> list[list[Chunk]]:
    """Consecutive pieces grouped into runs of at most `max_tokens`; too large pieces are split first.

    A run ends early at a new section when it is already half full, so sections stay together.
    """
    def new_section(run: list[Chunk], piece: Chunk, size: int) -> bool:
        return piece.section != run[-1].section and size >= max_tokens // 2

    pieces = _fitting(pieces, max_tokens, count)
    return _greedy([(p, p.tokens) for p in pieces], max_tokens, 1, new_section)


def _fitting(pieces: list[Chunk], max_tokens: int, count: CountTokens) -> list[Chunk]:
    """Pieces recounted with `count`, those over `max_tokens` split at natural boundaries."""
    out = []
    for piece in pieces:
        tokens = count(piece.text)
        if tokens <= max_tokens:
            out.append(replace(piece, tokens=tokens))
            continue
        for text in split_text(piece.text, max_tokens, count):
            if text.strip():
                out.append(replace(piece, text=text.strip(), tokens=count(text.strip())))
    return out


def merge(group: list[Chunk], count: CountTokens) -> Chunk:
    """One chunk from consecutive pieces, blank-line separated, spanning their pages."""
    text = "\n\n".join(piece.text for piece in group)
    pages = [p for piece in group for p in (piece.page_start, piece.page_end) if p is not None]
    return Chunk(text, count(text), min(pages, default=None), max(pages, default=None), group[0].section)


def group_texts(texts: list[str], max_tokens: int, count: CountTokens) -> list[list[str]]:
    """Consecutive texts grouped into runs of at most `max_tokens` (each text fits on its own)."""
    return [[piece.text for piece in run] for run in pack([Chunk(text) for text in texts], max_tokens, count)]


def chunk(pieces: list[Chunk], max_tokens: int, count: CountTokens) -> list[Chunk]:
    """Token-aware chunks of at most about `max_tokens`, cut at section, paragraph, sentence or word."""
    return [merge(group, count) for group in pack(pieces, max_tokens, count)]
