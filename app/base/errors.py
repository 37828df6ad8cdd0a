"""Errors the user can act on: shown as one line, never as a traceback."""

from typing import Any


class UserError(Exception):
    """Bad input or a missing resource: the message names the thing and the problem."""


class NoRoom(UserError):
    """The machine cannot do it (a full disk, a file size limit): one line, exit code 1."""


class Cancelled(Exception):
    """A long job was stopped through its cancel token; `partial` is what it had done, if anything."""

    def __init__(self, partial: Any = None) -> None:
        super().__init__("stopped")
        self.partial = partial
