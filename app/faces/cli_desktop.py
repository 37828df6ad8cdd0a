"""`nemo-chat desktop install|uninstall`: the applications-menu entry (app/services/desktop.py)."""

from __future__ import annotations

import os
import sys

from app.base.config import HOME_ENV
from app.faces.locale_text import terminal_text


def add_desktop_parser(commands) -> None:
    desktop = commands.add_parser("desktop", help="add nemo-chat to the applications menu (Linux), or remove it")
    desktop.add_argument("action", choices=["install", "uninstall"])


def run_desktop(args) -> int:
    from app.services import desktop

    if not desktop.supported():
        print("nemo-chat: " + terminal_text("desktop_unsupported", system=sys.platform,
                                            command=" ".join(_launch_command())))
        return 0
    if args.action == "install":
        written = desktop.install(_launch_command())
        print("nemo-chat: " + terminal_text("desktop_installed", entry=str(written.entry), icon=str(written.icon)))
    else:
        removed = desktop.uninstall()
        print("nemo-chat: " + (terminal_text("desktop_removed", paths=", ".join(map(str, removed))) if removed
                               else terminal_text("desktop_nothing_to_remove")))
    return 0


def _launch_command() -> list[str]:
    """How a launcher starts this installation's UI (this home, when one was chosen)."""
    from pathlib import Path

    script = Path(sys.executable).parent / "nemo-chat"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "app"]
    if os.environ.get(HOME_ENV):
        command += ["--home", os.environ[HOME_ENV]]
    return command + ["ui"]
