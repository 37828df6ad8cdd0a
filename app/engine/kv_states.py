"""Saved K/V states of prompts, so that going back to a long conversation (in this process or a
new one) reads only its new tokens.

A state is the K/V cells of one sequence (llama.cpp's `llama_state_seq_get_data`) and the token
ids they hold, in one file of the home's `kv-states/` folder (0600, the folder 0700). A file is
only ever restored into a context of the same kind: same model file (path, size, modification
time and a hash of its first MiB), same context size per sequence, K/V type and attention layout.
The folder keeps within a disk budget: the states used longest ago go first.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"NCKVST01"
SUFFIX = ".kv"
HEAD_BYTES = 1 << 20  # the part of the model file hashed into its identity
GIB = 1 << 30


def model_identity(path: str | Path) -> dict:
    """What tells one model file from another: its path, size, modification time and first MiB."""
    path = Path(path).resolve()
    stat = path.stat()
    with path.open("rb") as file:
        head = hashlib.sha256(file.read(HEAD_BYTES)).hexdigest()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}


@dataclass(frozen=True)
class SavedState:
    """One state file and the token ids its cells hold."""

    path: Path
    ids: list[int]


class KvStateStore:
    """State files of one kind of context (`kind`: the model's identity and the context's shape),
    within `budget_bytes` for the whole folder."""

    def __init__(self, folder: Path, budget_bytes: int, kind: dict) -> None:
        self.folder, self.budget_bytes, self.kind = folder, budget_bytes, kind
        self._prefix = hashlib.sha256(json.dumps(kind, sort_keys=True).encode()).hexdigest()[:20]

    def best(self, prompt: list[int]) -> tuple[SavedState | None, int]:
        """The saved state sharing the longest prefix with `prompt`, and that prefix's length."""
        found, longest = None, 0
        for path in self._files():
            saved = self._read_ids(path)
            if saved is None:
                continue
            shared = common_prefix(saved.ids, prompt)
            if shared > longest:
                found, longest = saved, shared
        return found, longest

    def load(self, saved: SavedState) -> bytes | None:
        """The state's bytes (None when the file is gone or is not of this kind); marks it used."""
        try:
            with saved.path.open("rb") as file:
                header = _read_header(file)
                if header is None or header[0] != self.kind:
                    return None
                data = file.read()
            os.utime(saved.path)  # least recently used goes first
            return data
        except OSError:
            return None

    def save(self, ids: list[int], data: bytes) -> Path | None:
        """Keep a state (replacing one with the same ids), then evict down to the budget; None when
        it is larger than the whole budget."""
        header = json.dumps(self.kind, sort_keys=True).encode()
        packed = array("i", ids).tobytes()
        size = len(MAGIC) + 8 + len(header) + len(packed) + len(data)
        if size > self.budget_bytes:
            return None
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest = hashlib.sha256(packed).hexdigest()[:24]
        path = self.folder / f"{self._prefix}-{digest}{SUFFIX}"
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")  # created 0600
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(MAGIC + struct.pack("<II", len(header), len(ids)) + header + packed)
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.evict(keep=path)
        return path

    def evict(self, keep: Path | None = None) -> None:
        """Delete the states used longest ago (of any model) until the folder is within budget."""
        entries = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda entry: entry[0]):
            if total <= self.budget_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob(f"{self._prefix}-*{SUFFIX}")) if self.folder.is_dir() else []

    def _read_ids(self, path: Path) -> SavedState | None:
        try:
            with path.open("rb") as file:
                header = _read_header(file)
        except OSError:
            return None
        if header is None or header[0] != self.kind:
            return None
        return SavedState(path, header[1])


def _read_header(file) -> tuple[dict, list[int]] | None:
    """(kind, ids) from the start of a state file; None when it is not one."""
    start = file.read(len(MAGIC) + 8)
    if len(start) < len(MAGIC) + 8 or not start.startswith(MAGIC):
        return None
    header_len, n_ids = struct.unpack("<II", start[len(MAGIC):])
    try:
        kind = json.loads(file.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    ids = array("i")
    packed = file.read(4 * n_ids)
    if len(packed) != 4 * n_ids:
        return None
    ids.frombytes(packed)
    return kind, ids.tolist()


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
