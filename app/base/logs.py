"""The error log: tracebacks the user never sees go to `logs/nemo-chat.log` under the app's home."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from app.base.config import app_home

_logger = logging.getLogger("nemo-chat")


def log_path() -> Path:
    return app_home() / "logs" / "nemo-chat.log"


def _file_logger() -> Path:
    """The log file's path, its handler added once (1 MB, three old files kept)."""
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not any(getattr(h, "baseFilename", None) == str(path) for h in _logger.handlers):
        handler = RotatingFileHandler(path, maxBytes=2**20, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        _logger.addHandler(handler)
        _logger.propagate = False
    return path


def log_exception(what: str, exc: BaseException) -> Path:
    """Write `exc` with its traceback to the log; returns the log's path."""
    path = _file_logger()
    _logger.error(what, exc_info=(type(exc), exc, exc.__traceback__))
    return path


def log_notice(what: str) -> Path:
    """Write a one-line notice (something the app chose to do differently) to the log."""
    path = _file_logger()
    _logger.warning(what)
    return path
