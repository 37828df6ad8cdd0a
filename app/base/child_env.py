"""What a child process that reads untrusted input may see of our environment: no secrets."""

from __future__ import annotations

import os

SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
SECRET_PREFIXES = ("HF_", "HUGGING_FACE", "NEMO_CHAT_")  # the Hub's token and settings, the app's own keys


def is_secret(name: str) -> bool:
    """True for a variable a reader has no business seeing (`HF_TOKEN`, `NEMO_CHAT_REMOTE_KEY`, `AWS_SECRET_…`)."""
    upper = name.upper()
    return upper.startswith(SECRET_PREFIXES) or any(word in upper for word in SECRET_WORDS)


def scrubbed_environment(environ=None) -> dict[str, str]:
    """`environ` (default: ours) without the variables that may carry secrets."""
    return {name: value for name, value in (os.environ if environ is None else environ).items()
            if not is_secret(name)}
