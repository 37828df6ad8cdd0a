"""One app per home: the running UI holds a lock in the home that records its pid and address.

The lock is an `flock` on `instance.lock`, so it is released by the kernel when the process ends,
however it ends; a file left behind by a dead process (its pid gone) is taken over. A second
`nemo-chat ui` on the same home reads the address and opens the running app instead.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "instance.lock"


@dataclass(frozen=True)
class RunningApp:
    pid: int
    url: str


class InstanceLock:
    """The lock of one home; `claim` once, keep the object for the process's life."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_NAME
        self._handle = None

    def running(self) -> RunningApp | None:
        """The app that holds this home, if one runs (a live pid holding the lock)."""
        try:
            with open(self.path, "a+", encoding="utf-8") as handle:
                if _try_lock(handle):
                    return None  # nobody holds it: any record in it is stale
                handle.seek(0)
                record = json.loads(handle.read() or "{}")
        except (OSError, ValueError):
            return None
        pid, url = record.get("pid"), record.get("url")
        if not isinstance(pid, int) or not isinstance(url, str) or not _alive(pid):
            return None
        return RunningApp(pid, url)

    def claim(self, url: str) -> bool:
        """Hold the home for this process and record where it serves; False if another app holds it."""
        handle = open(self.path, "a+", encoding="utf-8")
        if not _try_lock(handle):
            handle.close()
            return False
        handle.truncate(0)
        handle.write(json.dumps({"pid": os.getpid(), "url": url}))
        handle.flush()
        os.chmod(self.path, 0o600)
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            self._handle.close()
            self._handle = None


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
