"""MCP servers the person configured, and their choices about each tool.

`HOME/mcp.json` has the shape Claude Desktop, LM Studio and Cursor use:
`{"mcpServers": {"NAME": {"command", "args", "env"} | {"url", "headers"}}}` (plus an optional
`"timeout"` in seconds per call). `HOME/mcp-tools.json` is written by the app: which MCP tools are
switched off and which may run without asking, each named `server/tool`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from app.base.config import app_home
from app.base.errors import UserError
from app.base.messages import Message

DEFAULT_TIMEOUT_S = 60.0  # a call that gets no answer for this long fails (one line)


@dataclass(frozen=True)
class McpServerConfig:
    """One server: started as `command args` (stdio) or reached at `url` (Streamable HTTP)."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    url: str = ""
    headers: dict = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"


def mcp_config_path() -> Path:
    return app_home() / "mcp.json"


def read_mcp_config(path: Path | None = None) -> list[McpServerConfig]:
    """The configured servers, in the file's order; none when the file does not exist. A file that
    is not the expected shape raises one UserError naming the file and what is wrong."""
    path = path or mcp_config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError("doc_cannot_read", name=str(path), reason=str(exc)) from None
    except json.JSONDecodeError as exc:
        raise UserError("mcp_bad_json", path=str(path), error=exc.msg, line=exc.lineno) from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise UserError("mcp_expected_servers", path=str(path))
    return [_server(path, name, entry) for name, entry in servers.items()]


def _server(path: Path, name: str, entry) -> McpServerConfig:
    where = Message("mcp_server_where", path=str(path), name=repr(name))
    if not isinstance(entry, dict):
        raise UserError("mcp_expected_object", where=where)
    command, url = entry.get("command"), entry.get("url")
    if bool(command) == bool(url):
        raise UserError("mcp_command_or_url", where=where)
    args, env, headers = entry.get("args", []), entry.get("env", {}), entry.get("headers", {})
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise UserError("mcp_bad_args", where=where)
    for label, table in (("env", env), ("headers", headers)):
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise UserError("mcp_bad_table", where=where, table=label)
    if url and not str(url).startswith(("http://", "https://")):
        raise UserError("mcp_bad_url", where=where)
    timeout = entry.get("timeout", DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise UserError("mcp_bad_timeout", where=where)
    return McpServerConfig(name, str(command or ""), tuple(args), dict(env), str(url or ""), dict(headers),
                           float(timeout))


class ToolChoices:
    """Which MCP tools are off and which may run without asking, kept in `HOME/mcp-tools.json`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or app_home() / "mcp-tools.json"
        self._lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self._off = set(data.get("off", [])) if isinstance(data, dict) else set()
        self._always = set(data.get("always_allowed", [])) if isinstance(data, dict) else set()

    def is_on(self, key: str) -> bool:
        return key not in self._off

    def set_on(self, key: str, on: bool) -> None:
        with self._lock:
            (self._off.discard if on else self._off.add)(key)
            self._save()

    def always_allowed(self, key: str) -> bool:
        return key in self._always

    def allow_always(self, key: str) -> None:
        with self._lock:
            self._always.add(key)
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"off": sorted(self._off), "always_allowed": sorted(self._always)}, indent=1),
                       encoding="utf-8")
        os.replace(tmp, self.path)
