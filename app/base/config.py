"""Where state lives and the user's settings, kept across restarts as one JSON file."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import platformdirs

HOME_ENV = "NEMO_CHAT_HOME"


def home_path() -> Path:
    """The root of all state: $NEMO_CHAT_HOME, else the platform's user data folder (maybe not made yet)."""
    root = os.environ.get(HOME_ENV) or platformdirs.user_data_dir("nemo-chat", appauthor=False)
    return Path(root).expanduser()


def app_home() -> Path:
    """The root of all state, made if missing."""
    path = home_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    return app_home() / "nemo-chat.db"


def models_dir() -> Path:
    path = app_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Settings:
    """Everything the user can set; defaults suit Mistral NeMo (temperature 0.3)."""

    model: str = ""  # a GGUF path or a catalog name; "" = the first model found
    n_ctx: int = 8192
    n_gpu_layers: int = -1  # -1 = all layers that the build can offload
    n_threads: int = 0  # 0 = one per CPU core
    kv_type: str = "f16"  # f16 | q8_0 | q4_0 (quantized types switch flash attention on)
    gpu: str = "auto"  # auto: the GPU plan (gpu_plan.py) sets layers, K/V type and flash attention; manual
    temperature: float = 0.3
    top_p: float = 0.95
    max_tokens: int = 1024
    system_prompt: str = ""
    tools: str = "current_datetime,calculator,search_conversations"  # NeMo function calling
    tool_choice: str = "auto"  # auto: the model decides; required: its first reply calls a tool; or a tool's name
    parse_timeout_s: float = 120.0  # reading one document (in a child process) may take this long
    parse_memory_mb: int = 2048  # ... and this much address space (RLIMIT_AS); 0 = no limit
    parse_max_pages: int = 2000  # a PDF with more pages is refused before its text is extracted; 0 = no limit
    parallel: int = 0  # sequences at once: embedded, 0 = from the GPU plan; on a server, requests in flight (0 = 8)
    remote: str = ""  # an OpenAI-compatible server's base URL ending in /v1; "" = the embedded engine
    remote_key: str = ""  # its API key (sent as a Bearer token)
    remote_model: str = ""  # the served model's name; "" = the first the server lists
    kv_states_gib: float = 4.0  # disk for saved conversation states (app/engine/kv_states.py); 0 = none
    silent_holder_s: float = 300.0  # a request waits for the model as long as the one holding it moves; one
    # that has not asked for its next token this long (a stream left open) is taken as gone

    def parse_limits(self) -> dict:
        """The keyword arguments of `read_document` that bound the parsing of a file."""
        return {"timeout_s": self.parse_timeout_s, "memory_mb": self.parse_memory_mb, "max_pages": self.parse_max_pages}

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        known = {f.name: f.type for f in fields(cls)}
        defaults = cls()
        values = {}
        for name in known:
            if name in data:
                kind = type(getattr(defaults, name))
                try:
                    values[name] = kind(data[name])
                except (TypeError, ValueError):
                    continue  # a hand-edited bad value falls back to its default
        return cls(**values)


def settings_path() -> Path:
    return app_home() / "settings.json"


def load_settings() -> Settings:
    """The saved settings, or the defaults when none (or an unreadable file) exist."""
    try:
        return Settings.from_dict(json.loads(settings_path().read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return Settings()


def save_settings(settings: Settings) -> None:
    """Write atomically: a crash never leaves half a settings file. Readable by the owner only
    (it may hold a server's API key)."""
    path = settings_path()
    tmp = path.with_suffix(".json.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(settings), indent=2, ensure_ascii=False))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
