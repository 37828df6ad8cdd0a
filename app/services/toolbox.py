"""The tools NeMo may call: the built-ins the settings switch on, and the tools of the configured
MCP servers that the person left on, each under a name unique among all of them.

An MCP tool keeps its own name unless another tool has it; then it is `server_tool` (and `_2`,
`_3`, … if even that is taken), in NeMo's name alphabet. A tool not marked read-only asks the
person before each call, unless they chose "always" for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.base.config import Settings
from app.base.errors import UserError
from app.nemo.prompt import ToolCall
from app.nemo.tools import ALLOW_ALWAYS, Approval, ConversationSearch, Tool, builtin_tools
from app.services.mcp_client import McpServers, McpTool
from app.services.mcp_config import ToolChoices

@dataclass(frozen=True)
class ToolInfo:
    """One tool as listed (CLI, Settings): the name NeMo calls it by and where it comes from."""

    name: str
    server: str  # "" for the app's own
    original: str  # the name its server gives it
    description: str
    read_only: bool
    on: bool

    @property
    def key(self) -> str:
        """How ToolChoices names an MCP tool."""
        return f"{self.server}/{self.original}"

    def as_dict(self) -> dict:
        return {"name": self.name, "server": self.server or "built-in", "tool": self.original,
                "description": self.description, "read_only": self.read_only, "on": self.on}


def _safe(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "tool"


def unique_names(reserved: list[str], tools: list[McpTool]) -> list[str]:
    """A name for each MCP tool, unique among `reserved` and each other."""
    taken, names = set(reserved), []
    for tool in tools:
        name = _safe(tool.name)
        if name in taken:
            name = _safe(f"{tool.server}_{tool.name}")
        base, n = name, 2
        while name in taken:
            name, n = f"{base[:60]}_{n}", n + 1
        taken.add(name)
        names.append(name)
    return names


@dataclass(frozen=True)
class _Entry:
    tool: Tool
    on: bool
    source: McpTool | None  # None for a built-in


class ToolBox:
    """Built-in and MCP tools under unique names; what is offered, listed, called and approved."""

    def __init__(self, search: ConversationSearch, servers: McpServers, choices: ToolChoices) -> None:
        self.search, self.servers, self.choices = search, servers, choices
        self._keys: dict[str, str] = {}  # NeMo's name of an MCP tool -> its "server/tool" key

    def _entries(self, settings: Settings) -> list[_Entry]:
        """Every tool (starting the servers not started yet) and whether NeMo is offered it."""
        wanted = {name.strip() for name in settings.tools.split(",")}
        entries = [_Entry(tool, tool.name in wanted, None) for tool in builtin_tools(self.search)]
        mcp_tools = self.servers.all_tools()
        for name, tool in zip(unique_names([e.tool.name for e in entries], mcp_tools), mcp_tools):
            entries.append(_Entry(self._mcp_tool(name, tool), self.choices.is_on(tool.key), tool))
            self._keys[name] = tool.key
        return entries

    def _mcp_tool(self, name: str, tool: McpTool) -> Tool:
        def run(**arguments) -> Any:
            return self.servers.call(tool.server, tool.name, arguments)

        description = tool.description or f"{tool.name} (MCP server {tool.server})"
        return Tool(name, description, tool.input_schema, run, tool.server, tool.read_only)

    def listing(self, settings: Settings) -> list[ToolInfo]:
        """Every tool, built-in first, with whether NeMo is offered it."""
        return [ToolInfo(e.tool.name, e.tool.server, e.source.name if e.source else e.tool.name, e.tool.description,
                         e.tool.read_only, e.on) for e in self._entries(settings)]

    def offered(self, settings: Settings) -> list[Tool]:
        """The tools NeMo is offered: built-ins switched on in settings, MCP tools left on."""
        return [e.tool for e in self._entries(settings) if e.on]

    def call(self, name: str, arguments: dict, settings: Settings) -> Any:
        """Run a tool by the name NeMo calls it (the CLI's `tools call`: the person asked, no approval)."""
        tools = {e.tool.name: e.tool for e in self._entries(settings)}
        if name not in tools:
            failed = [f"{s.name}: {s.error}" for s in map(self.servers.status, self.servers.names) if s.error]
            if failed:
                raise UserError("tools_unknown_servers_failed", name=repr(name), failed="; ".join(failed))
            raise UserError("tools_unknown", name=repr(name))
        return tools[name].run(**arguments)

    def approval(self, call: ToolCall, tool: Tool) -> Approval | None:
        """An Approval to wait for before `call` runs, or None when the tool may run at once."""
        key = self._keys.get(tool.name)
        if tool.read_only or key is None or self.choices.always_allowed(key):
            return None
        return Approval(call, tool, lambda answer: answer == ALLOW_ALWAYS and self.choices.allow_always(key))
