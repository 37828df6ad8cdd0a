"""Untrusted files are parsed in a child process with a time, memory and page limit; Stop kills it.

`parse_in_child(kind, data, name, ...)` runs `python -m app.documents.parse_child` with the file's
bytes on stdin, in an environment without secrets (`app.base.child_env`). The child caps its own address space (RLIMIT_AS), runs the reader for the kind
(`app.documents.reading.READERS`) and writes one JSON object on stdout: the (title, pages, parts)
triple, or the one-line UserError message it refused the file with. The parent waits at most
`timeout_s` seconds, kills the child when the token is cancelled, and turns every way of failing
into one line that names the file and the limit. JSON (not pickle) crosses the boundary, so a
child that was subverted by its input can at worst return wrong text.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.base.child_env import scrubbed_environment
from app.base.errors import Cancelled, UserError

POLL_S = 0.05  # how often the parent looks at the cancel token while the child works
LIMITS_HINT = "(Settings → Documents)"
_MEMORY_WORDS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def over_page_limit(name: str, pages: int, max_pages: int) -> UserError:
    return UserError(f"{name}: {pages:,} pages is over the {max_pages:,}-page limit {LIMITS_HINT}")


def over_time_limit(name: str, timeout_s: float) -> UserError:
    return UserError(f"{name}: reading took longer than {timeout_s:,g} s (the limit) {LIMITS_HINT}")


def over_memory_limit(name: str, memory_mb: int) -> UserError:
    return UserError(f"{name}: reading needed more than {memory_mb:,} MiB of memory (the limit) {LIMITS_HINT}")


def parse_in_child(kind: str, data: bytes, name: str, *, timeout_s: float, memory_mb: int, max_pages: int,
                   cancel=None):
    """(title, pages, parts) for `data` read as `kind`, parsed in a child process within the limits.

    Raises UserError (one line) on bad input or a limit, Cancelled when `cancel` is set meanwhile.
    """
    from app.storage.document_store import Chunk

    if cancel is not None:
        cancel.raise_if_cancelled()
    root = str(Path(__file__).resolve().parents[2])
    env = {**scrubbed_environment(), "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    header = json.dumps({"kind": kind, "name": name, "memory_mb": int(memory_mb), "max_pages": int(max_pages)})
    deadline = time.monotonic() + timeout_s
    child = subprocess.Popen([sys.executable, "-m", "app.documents.parse_child", header], cwd=root, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finished, output = threading.Event(), {}

    def talk() -> None:  # writes stdin and reads stdout/stderr to the end (or until the child is killed)
        try:
            output["out"], output["err"] = child.communicate(data)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            output["error"] = exc
        finally:
            finished.set()

    talker = threading.Thread(target=talk, name="parse-child-io", daemon=True)
    talker.start()
    try:
        while not finished.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            if time.monotonic() >= deadline:
                raise over_time_limit(name, timeout_s)
    finally:
        if child.poll() is None:
            child.kill()
        talker.join()  # the pipes close once the killed child is gone
        child.wait()  # reaped: no child is left behind
    if "error" in output:
        raise output["error"]
    out, err = output["out"], output["err"]
    return _result(out, err, child.returncode, name, memory_mb, Chunk)


def _result(out: bytes, err: bytes, returncode: int, name: str, memory_mb: int, Chunk):
    try:
        answer = json.loads(out.decode("utf-8")) if out.strip() else None
    except (UnicodeDecodeError, ValueError):
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        if answer["error"] == "memory":
            raise over_memory_limit(name, memory_mb)
        raise UserError(" ".join(str(answer["error"]).splitlines()))  # one line, whatever the child said
    if isinstance(answer, dict) and returncode == 0:
        return answer["title"], answer["pages"], [Chunk(**part) for part in answer["parts"]]
    text = err.decode("utf-8", "replace")
    if returncode == -signal.SIGKILL or any(word in text for word in _MEMORY_WORDS):  # SIGKILL: the OOM killer
        raise over_memory_limit(name, memory_mb)
    raise UserError(f"{name}: cannot read this file (the reader stopped, exit status {returncode})")
