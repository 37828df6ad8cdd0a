"""NeMo calls MCP tools: servers from `mcp.json` (a real stdio server written here with the SDK's
`MCPServer`), the CLI's `tools list` / `tools call`, unique names, approvals, and failures that
end in one-line steps while the conversation goes on."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from app.base.config import Settings
from app.history import History
from app.nemo import tekken as tk
from app.nemo.tools import ALLOW_ALWAYS, ALLOW_ONCE, DENY
from app.services.chat import ChatService, history_search
from app.services.mcp_client import FAILED, RUNNING, McpServers, McpTool
from app.services.mcp_config import ToolChoices, read_mcp_config
from app.services.toolbox import ToolBox, unique_names
from conftest import run_cli
from test_nemo_chat import ScriptedEngine

DEMO_SERVER = '''
import os, sys, time
from pathlib import Path
from typing import Annotated
from pydantic import Field
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("demo")
NOTES = Path(os.environ["DEMO_NOTES"])
Path(os.environ["DEMO_PIDS"]).open("a").write(f"{os.getpid()}\\n")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def shout(text: Annotated[str, Field(max_length=24)]) -> str:  # bounded: the grammar holds a call to it
    """Say the text in capitals."""
    return text.upper() + "!"


@server.tool()
def calculator(expression: str) -> str:
    """A calculator of this server's own (its name is taken by a built-in)."""
    return "not mine"


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
def add_note(text: str) -> str:
    """Append a line to the notes file."""
    with NOTES.open("a", encoding="utf-8") as handle:
        handle.write(text + "\\n")
    return f"noted: {text}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def hang() -> str:
    """Never answers."""
    time.sleep(3600)
    return ""


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def crash() -> str:
    """The server dies."""
    os._exit(3)


if __name__ == "__main__":
    server.run()
'''


@pytest.fixture()
def demo(home, tmp_path):
    """A stdio MCP server configured in HOME/mcp.json (plus one that cannot start); its notes file."""
    script = tmp_path / "demo_server.py"
    script.write_text(DEMO_SERVER, encoding="utf-8")
    notes, pids = tmp_path / "notes.txt", tmp_path / "pids.txt"
    env = {"DEMO_NOTES": str(notes), "DEMO_PIDS": str(pids)}
    home.mkdir(parents=True, exist_ok=True)
    (home / "mcp.json").write_text(json.dumps({"mcpServers": {
        "demo": {"command": sys.executable, "args": [str(script)], "env": env, "timeout": 5},
        "missing": {"command": str(tmp_path / "no-such-server")},
    }}), encoding="utf-8")
    return notes, pids


def test_tools_list_and_call_a_stdio_server_from_mcp_json(demo):
    notes, _ = demo
    home = Path(os.environ["NEMO_CHAT_HOME"])
    listed = run_cli("tools", "list", "--json", home=home)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    rows = {row["name"]: row for row in data["tools"]}
    assert rows["shout"] == {"name": "shout", "server": "demo", "tool": "shout", "description": "Say the text in capitals.",
                             "read_only": True, "on": True}
    assert rows["calculator"]["server"] == "built-in" and rows["demo_calculator"]["tool"] == "calculator"
    assert rows["add_note"]["read_only"] is False
    assert {"current_datetime", "search_conversations"} <= set(rows)
    servers = {s["name"]: s for s in data["servers"]}
    assert servers["demo"]["state"] == RUNNING and servers["missing"]["state"] == FAILED
    assert "\n" not in servers["missing"]["error"] and servers["missing"]["error"]

    called = run_cli("tools", "call", "shout", "--args", '{"text": "bonjour"}', "--json", home=home)
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"tool": "shout", "result": "BONJOUR!"}
    plain = run_cli("tools", "call", "add_note", "--args", '{"text": "from the CLI"}', home=home)
    assert plain.stdout.strip() == "noted: from the CLI" and notes.read_text() == "from the CLI\n"
    builtin = run_cli("tools", "call", "calculator", "--args", '{"expression": "6*7"}', "--json", home=home)
    assert json.loads(builtin.stdout)["result"] == {"expression": "6*7", "result": 42}


def test_bad_input_to_tools_is_one_line(demo):
    home = Path(os.environ["NEMO_CHAT_HOME"])
    unknown = run_cli("tools", "call", "nope", "--args", "{}", home=home)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "unknown tool 'nope'" in unknown.stderr
    bad_json = run_cli("tools", "call", "shout", "--args", "{text", home=home)
    assert bad_json.returncode == 2 and "--args: not valid JSON" in bad_json.stderr
    (home / "mcp.json").write_text('{"mcpServers": {"x": {"command": "a", "url": "http://b"}}}')
    both = run_cli("tools", "list", home=home)
    assert both.returncode == 2 and both.stderr.count("\n") == 1
    assert "mcp.json: server 'x': give either a command (stdio) or a url" in both.stderr
    (home / "mcp.json").write_text("{nope")
    broken = run_cli("tools", "list", home=home)
    assert broken.returncode == 2 and "mcp.json: not valid JSON" in broken.stderr and "Traceback" not in broken.stderr


def test_read_mcp_config_shapes(tmp_path):
    path = tmp_path / "mcp.json"
    assert read_mcp_config(path) == []
    path.write_text(json.dumps({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "server"], "env": {"A": "1"}},
        "web": {"url": "https://example.org/mcp", "headers": {"Authorization": "Bearer x"}, "timeout": 2.5}}}))
    files, web = read_mcp_config(path)
    assert (files.transport, files.args, files.env, files.timeout_s) == ("stdio", ("-y", "server"), {"A": "1"}, 60.0)
    assert (web.transport, web.url, web.headers, web.timeout_s) == ("http", "https://example.org/mcp",
                                                                     {"Authorization": "Bearer x"}, 2.5)
    for bad, message in [({"mcpServers": []}, "expected"), ({"mcpServers": {"a": {"command": "x", "args": "y"}}}, "args"),
                         ({"mcpServers": {"a": {"url": "ftp://x"}}}, "http"),
                         ({"mcpServers": {"a": {"command": "x", "timeout": 0}}}, "timeout")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(Exception, match=message):
            read_mcp_config(path)


def test_names_are_made_unique():
    tools = [McpTool("a", "search", "", {}, True), McpTool("b", "search", "", {}, True),
             McpTool("c", "calculator", "", {}, True), McpTool("d", "weird name/é", "", {}, True),
             McpTool("a", "b_search", "", {}, True), McpTool("x", "b_search", "", {}, True),
             McpTool("x_b", "search", "", {}, True)]
    assert unique_names(["calculator"], tools) == ["search", "b_search", "c_calculator", "weird_name__", "a_b_search",
                                                   "x_b_search", "x_b_search_2"]


def nemo_call(tekken, name: str, arguments: dict, call_id: str) -> list[int]:
    return [tk.TOOL_CALLS, *tekken.encode(json.dumps([{"name": name, "arguments": arguments, "id": call_id}]))]


@pytest.fixture()
def chat_with_mcp(demo, tiny_nemo_gguf, home):
    """ChatService with the real tool loop, a scripted NeMo and the demo server's tools."""
    history = History(home / "chat.db")
    servers = McpServers(read_mcp_config())
    tools = ToolBox(history_search(history), servers, ToolChoices())
    made = []

    def service(replies: list[list[int]]) -> ChatService:
        engine = ScriptedEngine(tiny_nemo_gguf, replies)
        made.append(engine)
        return ChatService(history, engine, toolbox=tools)

    yield service, history, servers, tools
    servers.close()
    history.close()


def answer_approvals(updates, answers: list[str]):
    """Drain a reply, answering each approval it asks from another thread (as the page does)."""
    asked, last = [], None
    for update in updates:
        if update.approval is not None:
            asked.append(update.approval)
            threading.Thread(target=update.approval.decide, args=(answers.pop(0),)).start()
        last = update
    return asked, last


def test_a_nemo_tool_call_reaches_the_mcp_tool_after_approval(chat_with_mcp, tiny_nemo_gguf, demo):
    service, history, _, tools = chat_with_mcp
    notes, _ = demo
    tekken = tk.Tekken.from_gguf(tiny_nemo_gguf)
    settings = Settings(model=str(tiny_nemo_gguf), tools="calculator")
    chat = service([nemo_call(tekken, "shout", {"text": "salut"}, "shout0001"),
                    nemo_call(tekken, "add_note", {"text": "first"}, "note00001"),
                    tekken.encode("Done.")])
    asked, final = answer_approvals(chat.send(None, "Shout, then note", settings), [ALLOW_ONCE])
    assert [a.call.name for a in asked] == ["add_note"], "only the tool that is not read-only asks"
    assert final.status == "complete" and final.text == "Done."
    steps = [json.loads(m["content"]) for m in history.messages(final.conversation_id) if m["role"] == "tool"]
    assert [(s["name"], s["result"], s["error"]) for s in steps] == [("shout", "SALUT!", None),
                                                                     ("add_note", "noted: first", None)]
    offered = chat.engine.prompts[0]
    assert tekken.decode(offered).count('"name": "shout"') == 1 and '"demo_calculator"' in tekken.decode(offered)
    assert notes.read_text() == "first\n"

    chat = service([nemo_call(tekken, "add_note", {"text": "second"}, "note00002"), tekken.encode("As you wish."),
                    nemo_call(tekken, "add_note", {"text": "third"}, "note00003"), tekken.encode("Noted."),
                    nemo_call(tekken, "add_note", {"text": "fourth"}, "note00004"), tekken.encode("Noted again.")])
    asked, final = answer_approvals(chat.send(final.conversation_id, "Note again", settings), [DENY])
    denied = json.loads(history.messages(final.conversation_id)[-2]["content"])
    assert denied["denied"] is True and "denied" in denied["error"] and final.text == "As you wish."
    assert notes.read_text() == "first\n", "a denied call never runs"
    assert "the user denied this call" in tekken.decode(chat.engine.prompts[1]), "NeMo is told"

    asked, _ = answer_approvals(chat.send(final.conversation_id, "Note", settings), [ALLOW_ALWAYS])
    assert len(asked) == 1 and tools.choices.always_allowed("demo/add_note")
    asked, final = answer_approvals(chat.send(final.conversation_id, "Note", settings), [])
    assert asked == [] and final.text == "Noted again." and notes.read_text() == "first\nthird\nfourth\n"
    assert ToolChoices().always_allowed("demo/add_note"), "kept in mcp-tools.json"


def test_a_required_call_of_an_mcp_tool_runs_on_the_real_engine(demo, tiny_nemo_gguf, home):
    """The real engine (tiny NeMo), the real tool loop, the demo server over stdio: with the MCP
    tool named as the required tool, the grammar-held call reaches the server, its result is saved
    as a step and goes back to the model (no approval: `shout` is read-only)."""
    from app.engine.llama import LlamaEngine

    history = History(home / "chat.db")
    servers = McpServers(read_mcp_config())
    engine = LlamaEngine()
    try:
        service = ChatService(history, engine, toolbox=ToolBox(history_search(history), servers, ToolChoices()))
        settings = Settings(model=str(tiny_nemo_gguf), n_ctx=1024, max_tokens=80, temperature=0.0, tools="",
                            tool_choice="shout")
        final = list(service.send(None, "Shout hello", settings))[-1]
        assert final.status == "complete" and final.approval is None
        steps = [json.loads(m["content"]) for m in history.messages(final.conversation_id) if m["role"] == "tool"]
        assert steps and steps[0]["name"] == "shout" and steps[0]["error"] is None, steps
        assert steps[0]["result"] == steps[0]["arguments"]["text"].upper() + "!", "the demo server ran the call"
    finally:
        engine.unload()
        servers.close()
        history.close()


def test_failures_are_one_line_steps_and_the_chat_goes_on(chat_with_mcp, tiny_nemo_gguf):
    service, history, servers, _ = chat_with_mcp
    tekken = tk.Tekken.from_gguf(tiny_nemo_gguf)
    settings = Settings(model=str(tiny_nemo_gguf), tools="")
    chat = service([nemo_call(tekken, "hang", {}, "hang00001"), nemo_call(tekken, "crash", {}, "crash0001"),
                    nemo_call(tekken, "shout", {"text": "back"}, "shout0002"), tekken.encode("Still here.")])
    final = list(chat.send(None, "Try everything", settings))[-1]
    assert final.status == "complete" and final.text == "Still here."
    steps = [json.loads(m["content"]) for m in history.messages(final.conversation_id) if m["role"] == "tool"]
    errors = [s["error"] for s in steps]
    assert "hang gave no answer within 5 s" in errors[0]
    assert errors[1].startswith("demo: crash failed") and steps[2]["result"] == "BACK!", "restarted after the crash"
    assert all(e is None or "\n" not in e for e in errors)
    assert servers.status("missing").state == FAILED


def test_servers_start_lazily_and_stop_with_the_app(demo):
    from app.services.root import Services

    _, pids = demo
    with Services() as services:
        assert not pids.exists() and services.mcp.status("demo").state == "idle", "nothing starts before it is needed"
        assert any(t.server == "demo" for t in services.tools.offered(services.settings))
        pid = int(pids.read_text().split()[0])
        os.kill(pid, 0)  # running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
