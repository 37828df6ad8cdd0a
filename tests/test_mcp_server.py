"""`nemo-chat mcp`: nemo-chat's tools driven by the official SDK's clients, on the real SmolLM2
engine: stdio (list, search the history, summarize with progress, cancel) and Streamable HTTP
behind the web guard."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from conftest import free_port, run_cli

TOOLS = {"summarize_document", "ask_document", "translate_text", "translate_document", "search_history"}
NOTES = """# Growing tomatoes on a balcony

Tomatoes need six to eight hours of sun a day. A south-facing balcony is best.

## Pots and soil

Use pots of at least twenty litres with drainage holes, and a light potting soil mixed with compost.

## Water

Water deeply in the morning, twice a day in hot weather, and never let the pots dry out completely.
"""


def server_params(home, *extra: str) -> StdioServerParameters:
    env = {**os.environ, "NEMO_CHAT_HOME": str(home)}
    return StdioServerParameters(command=sys.executable, args=["-m", "app", "mcp", "--model", "smollm2", "--ctx", "1024",
                                                               "--parallel", "1", *extra], env=env)


def result_of(reply) -> dict:
    assert not reply.is_error, reply.content
    return json.loads(reply.content[0].text)


def summary_calls_cached(home) -> int:
    with sqlite3.connect(home / "nemo-chat.db") as db:
        return db.execute("SELECT count(*) FROM cached_results WHERE kind = 'summary'").fetchone()[0]


@pytest.mark.timeout(600)
def test_an_agent_uses_nemo_chat_over_stdio(home, tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps({"title": "Pasta night", "messages": [
        {"role": "user", "content": "How long do I cook fresh tagliatelle?"},
        {"role": "assistant", "content": "About three minutes in salted boiling water."}]}))
    imported = run_cli("import", str(chat), home=home)
    assert imported.returncode == 0, imported.stderr
    notes = tmp_path / "tomatoes.md"
    notes.write_text(NOTES, encoding="utf-8")
    long_text = tmp_path / "long.md"
    long_text.write_text("\n\n".join(f"## Part {i}\n\n" + f"Paragraph {i} is about the harvest of year {1900 + i}. " * 12
                                     for i in range(40)), encoding="utf-8")

    async def agent():
        async with Client(server_params(home)) as client:
            listed = await client.list_tools()
            assert {tool.name for tool in listed.tools} == TOOLS
            tools = {tool.name: tool for tool in listed.tools}
            assert tools["search_history"].annotations.read_only_hint is True
            assert tools["translate_document"].annotations.read_only_hint is False
            assert "from" in tools["translate_text"].input_schema["properties"]

            found = result_of(await client.call_tool("search_history", {"query": "tagliatelle"}))
            assert [hit["title"] for hit in found["hits"]] == ["Pasta night"]

            progress = []

            async def seen(done, total, message):
                progress.append((done, total, message))

            summary = result_of(await client.call_tool("summarize_document", {"path": str(notes), "length": "short"},
                                                       progress_callback=seen))
            assert summary["summary"].strip() and summary["stopped"] is False and summary["engine_calls"] >= 1
            assert summary["title"] == "Growing tomatoes on a balcony"
            assert progress and all(total for _, total, _ in progress) and progress[-1][0] >= progress[0][0]
            again = result_of(await client.call_tool("summarize_document", {"path": str(notes), "length": "short"}))
            assert again["summary"] == summary["summary"] and again["engine_calls"] == 0 and again["cached_calls"] >= 1

            asked = result_of(await client.call_tool("ask_document", {"question": "How big should the pots be?",
                                                                      "paths": [str(notes)]}))
            assert asked["stopped"] is False and asked["chunks"] >= 1 and isinstance(asked["sources"], list)
            assert asked["answer"].strip() or not asked["found"]

            started = anyio.Event()

            async def first(done, total, message):
                started.set()

            cancel = anyio.CancelScope()

            async def summarize_until_cancelled():
                with cancel:
                    await client.call_tool("summarize_document", {"path": str(long_text)}, progress_callback=first)

            async with anyio.create_task_group() as group:
                group.start_soon(summarize_until_cancelled)
                await started.wait()
                cancel.cancel()
            assert cancel.cancelled_caught

            # The engine takes requests first come, first served: were the summary still running,
            # its next call would finish (and be cached) before each translation.
            translated = result_of(await client.call_tool("translate_text", {"text": "Good morning.", "to": "fr"}))
            assert translated["translation"].strip() and translated["target_language"] == "fr"
            before = summary_calls_cached(home)
            result_of(await client.call_tool("translate_text", {"text": "Good night.", "to": "de", "from": "en"}))
            assert summary_calls_cached(home) == before, "the cancelled summary stopped"

            failed = await client.call_tool("summarize_document", {"path": str(tmp_path / "none.md")})
            assert failed.is_error and "none.md" in failed.content[0].text

    anyio.run(agent)


def test_mcp_over_http_behind_the_guard_and_as_a_configured_server(home, tmp_path):
    port, key = free_port(), "k" * 24
    env = {**os.environ, "NEMO_CHAT_HOME": str(home), "NEMO_CHAT_API_KEY": key}
    server = subprocess.Popen([sys.executable, "-m", "app", "mcp", "--http", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving MCP at" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}/mcp"
        _wait_until_served(url)
        assert httpx.post(url, json={}, headers={"Authorization": f"Bearer {key}", "Host": "evil.example"}).status_code == 421
        assert httpx.post(url, json={}).status_code == 401
        client_home = tmp_path / "client"
        client_home.mkdir()
        (client_home / "mcp.json").write_text(json.dumps({"mcpServers": {
            "nemo": {"url": url, "headers": {"Authorization": f"Bearer {key}"}}}}))
        listed = run_cli("tools", "list", "--json", home=client_home)
        assert listed.returncode == 0, listed.stderr
        assert TOOLS <= {row["name"] for row in json.loads(listed.stdout)["tools"] if row["server"] == "nemo"}
        called = run_cli("tools", "call", "search_history", "--args", '{"query": "nothing yet"}', "--json",
                         home=client_home)
        assert json.loads(called.stdout)["result"]["hits"] == []
        (client_home / "mcp.json").write_text(json.dumps({"mcpServers": {"nemo": {"url": url}}}))
        refused = run_cli("tools", "list", "--json", home=client_home)
        assert json.loads(refused.stdout)["servers"][0]["state"] == "failed", "no key, no tools"
    finally:
        server.terminate()
        server.wait(30)


def _wait_until_served(url: str) -> None:
    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            anyio.run(anyio.sleep, 0.05)
    raise AssertionError(f"{url} never answered")
