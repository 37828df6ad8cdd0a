"""The app's private tmp folder: uploads land there and are deleted once read; files made for a
browser tab to download are deleted when that tab closes; the folder is emptied at start."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

from app.base.config import app_home


def private_tmp() -> Path:
    """Gradio's upload folder: the app's `tmp/` (unless the user chose one with GRADIO_TEMP_DIR)."""
    return Path(os.environ.setdefault("GRADIO_TEMP_DIR", str(app_home() / "tmp")))


def clean_private_tmp() -> None:
    """Empty the app's own tmp folder at start (never a folder the user chose)."""
    folder = private_tmp()
    if folder == app_home() / "tmp" and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def forget_upload(path: str | Path) -> None:
    """Delete an uploaded file once it has been read (it is in SQLite now)."""
    Path(path).unlink(missing_ok=True)


def file_name(title: str, suffix: str) -> str:
    """A safe file name from a document title: 'Council minutes - summary.md'."""
    stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in title)[:80].strip() or "download"
    return stem + suffix


class TabFiles:
    """Files written for a browser tab (its session) to download; deleted when the tab goes."""

    def __init__(self) -> None:
        self._folders: dict[str, list[Path]] = defaultdict(list)
        self._lock = threading.Lock()

    def write(self, session: str, name: str, text: str) -> str:
        folder = Path(tempfile.mkdtemp(prefix="download-", dir=private_tmp()))
        path = folder / name
        path.write_text(text, encoding="utf-8")
        with self._lock:
            self._folders[session].append(folder)
        return str(path)

    def forget(self, session: str) -> None:
        """Delete every file written for this tab (called when the page is closed)."""
        with self._lock:
            folders = self._folders.pop(session, [])
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
