"""Private by default: what the app writes is for its user only (folders 0700, files 0600).

`keep_private()` sets the process umask to 077, so every file and folder the app makes from then on
(the database and its WAL/SHM, logs, uploads and downloads in `tmp/`, exports, models) is the
user's alone. `tighten_home(home)` does the same for what an earlier version left open.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
FILES = ("nemo-chat.db", "nemo-chat.db-wal", "nemo-chat.db-shm", "nemo-chat.db-journal", "settings.json")
TREES = ("logs", "tmp")  # the app's own folders: everything in them is tightened
FOLDERS = ("models",)  # the folder only: the files in it may be the user's own


def keep_private() -> None:
    """From now on, what this process creates is readable and writable by its user only."""
    os.umask(PRIVATE_UMASK)


def tighten_home(home: Path) -> int:
    """Take group and other access away from the home and what the app keeps in it; returns how
    many files and folders were changed. Links are never followed; other files are left alone."""
    if not home.is_dir() or home.is_symlink():
        return 0
    paths = [home, *(home / name for name in (*FILES, *FOLDERS))]
    for name in TREES:
        if (home / name).is_symlink():
            continue
        for folder, folders, files in os.walk(home / name):
            paths += [Path(folder, entry) for entry in (*folders, *files)]
        paths.append(home / name)
    return sum(_tighten(path) for path in paths)


def _tighten(path: Path) -> int:
    try:
        mode = path.lstat().st_mode
    except OSError:
        return 0
    if stat.S_ISLNK(mode) or not mode & 0o077:
        return 0
    try:
        path.chmod(stat.S_IMODE(mode) & 0o700)
    except OSError:  # not ours to change: left as it is
        return 0
    return 1
