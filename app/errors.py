"""Errors the user can act on: shown as one line, never as a traceback."""


class UserError(Exception):
    """Bad input or a missing resource: the message names the thing and the problem."""


class Cancelled(Exception):
    """A long job was stopped through its cancel token."""
