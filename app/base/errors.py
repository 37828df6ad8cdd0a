"""Errors the user can act on: shown as one line, never as a traceback."""

from typing import Any

from app.base.messages import Message


class UserError(Exception):
    """Bad input or a missing resource: a message key (`app/faces/locales`) and its values, which
    name the thing and the problem. The faces word it in their language (`message`); `str()` is
    the English text. A key that is not in the locale files is taken as the sentence itself."""

    def __init__(self, key: str, /, **values: Any) -> None:
        super().__init__(key)
        self.message = Message(key, **values)

    def __str__(self) -> str:
        return str(self.message)


class NoRoom(UserError):
    """The machine cannot do it (a full disk, a file size limit): one line, exit code 1."""


class Cancelled(Exception):
    """A long job was stopped through its cancel token; `partial` is what it had done, if anything."""

    def __init__(self, partial: Any = None) -> None:
        super().__init__("stopped")
        self.partial = partial
