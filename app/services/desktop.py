"""The launcher entry: an XDG `.desktop` file and its icon, so nemo-chat opens from the menu.

Only freedesktop systems (Linux, BSD) have such menus; elsewhere `supported()` is False and nothing
is written. Paths follow the XDG base directory spec ($XDG_DATA_HOME, else ~/.local/share).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

APP_ID = "nemo-chat"
ICON = Path(__file__).resolve().parents[2] / "assets" / "nemo-chat.svg"


@dataclass(frozen=True)
class DesktopEntry:
    entry: Path  # the .desktop file
    icon: Path


def supported() -> bool:
    """Whether this system has XDG application menus."""
    return sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


def entry_paths() -> DesktopEntry:
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return DesktopEntry(data_home / "applications" / f"{APP_ID}.desktop",
                        data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg")


def entry_text(command: list[str]) -> str:
    """The .desktop file that runs `command` (the launcher's argv)."""
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=nemo-chat",
        "GenericName=Local AI chat",
        "Comment=Chat, summarize and translate with Mistral NeMo on this computer",
        f"Exec={' '.join(_exec_quoted(arg) for arg in command)}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "StartupNotify=false",
        "Categories=Utility;",
        "Keywords=chat;llm;mistral;nemo;translate;summarize;",
        "",
    ])


def install(command: list[str]) -> DesktopEntry:
    """Write the entry and the icon (replacing older ones); the paths written."""
    paths = entry_paths()
    paths.icon.parent.mkdir(parents=True, exist_ok=True)
    paths.icon.write_bytes(ICON.read_bytes())
    paths.entry.parent.mkdir(parents=True, exist_ok=True)
    paths.entry.write_text(entry_text(command), encoding="utf-8")
    return paths


def uninstall() -> list[Path]:
    """Remove the entry and the icon; the paths removed."""
    removed = []
    for path in (entry_paths().entry, entry_paths().icon):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def _exec_quoted(arg: str) -> str:
    """An Exec argument, quoted as the Desktop Entry spec asks when it holds reserved characters."""
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`='):
        return arg.replace("%", "%%")
    quoted = "".join("\\" + c if c in '"`$\\' else c for c in arg).replace("%", "%%")
    return '"' + quoted.replace("\\", "\\\\") + '"'  # the string escape applies on top of the quoting
