"""Untrusted files are read in a child process with a time, memory and page limit; Stop kills it.

`parse_in_child(kind, path, name, ...)` runs `python -m app.documents.parse_child` with the file on
stdin, in an environment without secrets (`app.base.child_env`). The child caps its own address
space (RLIMIT_AS), runs the reader for the kind (`app.documents.reading.READERS`), cuts the text into chunks and counts its tokens, and writes JSON
lines on stdout as it goes: the chunks, the Markdown a window at a time, then the title, pages and
token count; or the message (key and values) of the UserError it refused the file with. The parent reads the lines
as they come (its memory follows the text's size, nothing more), waits at most `timeout_s` seconds,
kills the child when the token is cancelled, and turns every way of failing into one line that
names the file and the limit. JSON (not pickle) crosses the boundary, so a child that was subverted
by its input can at worst return wrong text, and no more than MAX_TEXT_CHARS of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.base.child_env import scrubbed_environment
from app.base.errors import Cancelled, UserError
from app.base.messages import Message

POLL_S = 0.05  # how often the parent looks at the cancel token while the child works
_MEMORY_WORDS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
MAX_TEXT_CHARS = 256 * 2**20  # text the parent takes from one file (a 100 MB upload of plain text is under it)


def over_page_limit(name: str, pages: int, max_pages: int) -> UserError:
    return UserError("doc_over_page_limit", name=name, pages=f"{pages:,}", max_pages=f"{max_pages:,}")


def over_time_limit(name: str, timeout_s: float) -> UserError:
    return UserError("doc_over_time_limit", name=name, seconds=f"{timeout_s:,g}")


def over_memory_limit(name: str, memory_mb: int) -> UserError:
    return UserError("doc_over_memory_limit", name=name, mib=f"{memory_mb:,}")


@dataclass
class ParsedText:
    """What the child read from a file: its Markdown, cut into chunks, with the totals."""

    title: str = ""
    pages: int | None = None
    markdown: str = ""
    tokens: int = 0
    chunks: list = field(default_factory=list)  # app.storage.document_store.Chunk


def over_text_limit(name: str) -> UserError:
    return UserError("doc_over_text_limit", name=name, chars=f"{MAX_TEXT_CHARS:,}")


def parse_in_child(kind: str, path: Path, name: str, *, timeout_s: float, memory_mb: int, max_pages: int,
                   cancel=None) -> ParsedText:
    """The file at `path` read as `kind` in a child process within the limits.

    Raises UserError (one line) on bad input or a limit, Cancelled when `cancel` is set meanwhile.
    """
    if cancel is not None:
        cancel.raise_if_cancelled()
    root = str(Path(__file__).resolve().parents[2])
    env = {**scrubbed_environment(), "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    header = json.dumps({"kind": kind, "name": name, "memory_mb": int(memory_mb), "max_pages": int(max_pages)})
    deadline = time.monotonic() + timeout_s
    with open(path, "rb") as source:
        child = subprocess.Popen([sys.executable, "-m", "app.documents.parse_child", header], cwd=root, env=env,
                                 stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    answer = _Answer()
    readers = [threading.Thread(target=answer.read, args=(child.stdout,), name="parse-child-out", daemon=True),
               threading.Thread(target=answer.read_errors, args=(child.stderr,), name="parse-child-err", daemon=True)]
    for reader in readers:
        reader.start()
    try:
        while readers[0].is_alive():
            readers[0].join(min(POLL_S, max(0.0, deadline - time.monotonic())))
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            if answer.too_long:
                raise over_text_limit(name)
            if readers[0].is_alive() and time.monotonic() >= deadline:
                raise over_time_limit(name, timeout_s)
    finally:
        if child.poll() is None:
            child.kill()
        for reader in readers:
            reader.join()  # the pipes close once the killed child is gone
        child.wait()  # reaped: no child is left behind
    return answer.result(child.returncode, name, memory_mb)


class _Answer:
    """The child's lines as they come: chunks, the Markdown in pieces, then the totals or an error."""

    def __init__(self) -> None:
        self.parsed, self.markdown, self.chars = ParsedText(), [], 0
        self.done, self.error, self.garbled, self.too_long, self.stderr = False, None, False, False, b""

    def read(self, stream) -> None:
        from app.storage.document_store import Chunk

        for line in stream:
            if self.garbled or self.too_long:
                continue  # read to the end all the same, so the child is never blocked
            try:
                item = json.loads(line)
                if "chunk" in item:
                    self.parsed.chunks.append(Chunk(**item["chunk"]))
                    self.chars += len(self.parsed.chunks[-1].text)
                elif "markdown" in item:
                    self.markdown.append(str(item["markdown"]))
                    self.chars += len(self.markdown[-1])
                elif "done" in item:
                    done = item["done"]
                    self.parsed.title, self.parsed.pages, self.parsed.tokens = \
                        str(done["title"]), done["pages"], int(done["tokens"])
                    self.done = True
                elif "error" in item:
                    self.error = item["error"] if item["error"] == "memory" else Message.from_json(item["error"])
            except (ValueError, TypeError, KeyError):  # not what our child writes
                self.garbled = True
            self.too_long = self.chars > 2 * MAX_TEXT_CHARS  # the Markdown, and its chunks

    def read_errors(self, stream) -> None:
        for line in stream:
            self.stderr = (self.stderr + line)[-65536:]

    def result(self, returncode: int, name: str, memory_mb: int) -> ParsedText:
        if self.too_long:
            raise over_text_limit(name)
        if self.error == "memory":
            raise over_memory_limit(name, memory_mb)
        if self.error is not None:
            raise UserError(self.error.key, **self.error.values)
        if self.done and not self.garbled and returncode == 0:
            self.parsed.markdown = "".join(self.markdown)
            self.markdown.clear()
            return self.parsed
        text = self.stderr.decode("utf-8", "replace")
        if returncode == -signal.SIGKILL or any(word in text for word in _MEMORY_WORDS):  # SIGKILL: the OOM killer
            raise over_memory_limit(name, memory_mb)
        raise UserError("doc_reader_stopped", name=name, status=returncode)
