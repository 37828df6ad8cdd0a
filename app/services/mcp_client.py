"""Connections to the configured MCP servers, through the official `mcp` SDK's `Client`.

A server starts when its tools are first needed (stdio: its command is run; HTTP: a session is
opened), and all of them stop with the app (`close`). Every connection lives in one background
asyncio loop; the app's threads call in and wait, each call bounded by the server's timeout. A
server that cannot start, stops answering or dies gives a `McpFailure` (one line) and is started
afresh on its next use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from app.nemo.tools import ToolError
from app.base.errors import UserError
from app.services.mcp_config import McpServerConfig, read_mcp_config

IDLE, RUNNING, FAILED = "idle", "running", "failed"  # ServerStatus.state
STOP_WAIT_S = 10.0  # closing waits at most this long for a server to stop
START_WAIT_S = 30.0  # a server may take this long to start (or its call timeout, if longer)


class McpFailure(ToolError):
    """A server could not be reached, did not answer in time, or a tool reported an error."""


@dataclass(frozen=True)
class McpTool:
    """One tool a server lists."""

    server: str
    name: str
    description: str
    input_schema: dict
    read_only: bool  # the server marks it readOnlyHint: it changes nothing

    @property
    def key(self) -> str:
        return f"{self.server}/{self.name}"


@dataclass(frozen=True)
class ServerStatus:
    name: str
    transport: str  # stdio | http
    state: str  # IDLE, RUNNING or FAILED
    error: str
    tools: tuple[McpTool, ...]


def one_line(exc: BaseException) -> str:
    """An exception (or the first of a group) as one short line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


@asynccontextmanager
async def _http_transport(url: str, headers: dict):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


class _Connection:
    """One server's session, held open by a task of the loop until it is stopped or breaks."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.client = None
        self.tools: tuple[McpTool, ...] = ()
        self.state, self.error = IDLE, ""
        self._task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None

    async def start(self) -> None:
        if self.client is not None:
            return
        if self._task is None or self._task.done():
            self._ready, self._stop = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._hold(self._ready))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready.wait()), self.start_wait_s)
        except asyncio.TimeoutError:
            self.state, self.error = FAILED, f"not started within {self.start_wait_s:g} s"
            await self.stop()
        if self.client is None:
            raise McpFailure(f"{self.config.name}: {self.error or 'could not start'}")

    @property
    def start_wait_s(self) -> float:
        return max(START_WAIT_S, self.config.timeout_s)

    async def _hold(self, ready: asyncio.Event) -> None:
        from mcp import Client

        try:
            async with Client(self._transport(), read_timeout_seconds=self.config.timeout_s) as client:
                listed = await client.list_tools()
                self.tools = tuple(_tool(self.config.name, tool) for tool in listed.tools)
                self.client, self.state, self.error = client, RUNNING, ""
                ready.set()
                await self._stop.wait()
        except (Exception, asyncio.CancelledError) as exc:
            if not self._stop.is_set():
                self.state, self.error = FAILED, one_line(exc)
        finally:
            self.client = None
            if self.state == RUNNING:
                self.state = IDLE
            ready.set()

    def _transport(self):
        from mcp.client.stdio import StdioServerParameters, stdio_client

        config = self.config
        if config.url:
            return _http_transport(config.url, config.headers)
        return stdio_client(StdioServerParameters(command=config.command, args=list(config.args), env=config.env or None),
                            errlog=sys.stderr)

    async def call(self, name: str, arguments: dict) -> Any:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        await self.start()
        try:
            result = await self.client.call_tool(name, arguments, read_timeout_seconds=self.config.timeout_s)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise McpFailure(f"{self.config.name}: {name} gave no answer within {self.config.timeout_s:g} s") \
                    from None
            if exc.code == CONNECTION_CLOSED:
                await self._broken(exc)
            raise McpFailure(f"{self.config.name}: {name} failed: {one_line(exc)}") from None
        except Exception as exc:  # the server died or the connection broke
            await self._broken(exc)
            raise McpFailure(f"{self.config.name}: {name} failed: {self.error}") from None
        return _result(self.config.name, name, result)

    async def _broken(self, exc: BaseException) -> None:
        """The connection is gone: say why, and start afresh on the next use."""
        self.state, self.error = FAILED, one_line(exc)
        await self.stop()

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None and not self._task.done() and self.client is None:
            self._task.cancel()  # still starting: nothing to close politely
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_S)
            except asyncio.TimeoutError:
                self._task.cancel()


def _tool(server: str, tool) -> McpTool:
    annotations = tool.annotations
    return McpTool(server, tool.name, tool.description or "", dict(tool.input_schema or {"type": "object"}),
                   bool(annotations and annotations.read_only_hint))


def _result(server: str, name: str, result) -> Any:
    """What the model reads: the text the tool gave (as JSON data when it is JSON), else its
    structured result."""
    parts = [getattr(block, "text", None) or f"[{block.type}]" for block in result.content]
    if result.is_error:
        raise McpFailure(f"{server}: {name}: {' '.join(' '.join(parts).split())[:300] or 'the tool failed'}")
    if not parts and result.structured_content is not None:
        return result.structured_content
    text = "\n".join(parts)
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return data if isinstance(data, (dict, list)) else text


class McpServers:
    """All configured servers, each started when first needed; `close` stops them."""

    def __init__(self, configs: list[McpServerConfig], problem: UserError | None = None) -> None:
        self.configs = list(configs)
        self.problem = problem  # why mcp.json could not be used (None when it could)
        self._connections = {config.name: _Connection(config) for config in configs}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def configured(cls) -> "McpServers":
        """The servers of `HOME/mcp.json`; none, with the file's problem, when it cannot be used."""
        try:
            return cls(read_mcp_config())
        except UserError as exc:
            return cls([], exc)

    @property
    def names(self) -> list[str]:
        return [config.name for config in self.configs]

    def status(self, name: str) -> ServerStatus:
        connection = self._connections[name]
        return ServerStatus(name, connection.config.transport, connection.state, connection.error, connection.tools)

    def all_tools(self) -> list[McpTool]:
        """Every server's tools, in the configured order; servers that cannot start are left out
        (their status says why)."""
        if not self._connections:
            return []

        async def start_all():
            await asyncio.gather(*(c.start() for c in self._connections.values()), return_exceptions=True)

        self._wait(start_all(), max(c.start_wait_s for c in self._connections.values()) + STOP_WAIT_S)
        return [tool for connection in self._connections.values() for tool in connection.tools]

    def restart(self, name: str) -> ServerStatus:
        """Stop the server if it runs and start it again (Settings' Test button)."""
        connection = self._connections[name]

        async def again():
            await connection.stop()
            await connection.start()

        try:
            self._wait(again(), connection.start_wait_s + 2 * STOP_WAIT_S)
        except McpFailure:
            pass
        return self.status(name)

    def call(self, server: str, name: str, arguments: dict) -> Any:
        """Run one tool; McpFailure (one line) when it cannot."""
        connection = self._connections[server]
        return self._wait(connection.call(name, arguments),
                          connection.start_wait_s + connection.config.timeout_s + STOP_WAIT_S)

    def close(self) -> None:
        """Stop every server and the loop."""
        with self._lock:
            loop, thread, self._loop = self._loop, self._thread, None
        if loop is None:
            return

        async def stop_all():
            await asyncio.gather(*(c.stop() for c in self._connections.values()), return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(STOP_WAIT_S + 5)
        except Exception:  # a server that will not stop is left to the loop's end
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_WAIT_S)

    def _wait(self, coroutine, timeout_s: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise McpFailure(f"no answer within {timeout_s:g} s") from None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="nemo-chat-mcp")
                self._thread.start()
            return self._loop
