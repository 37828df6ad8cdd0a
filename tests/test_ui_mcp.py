"""MCP tools in the page (headless Chromium): Settings → "Tools from MCP servers" (state, tools on
and off, Test) and the question a tool that may change things asks before it runs (Deny)."""

from __future__ import annotations

import json

import pytest

from app.base.config import Settings, save_settings
from app.nemo import tekken as tk
from app.services.mcp_config import ToolChoices
from conftest import free_port
from test_mcp_client import demo, nemo_call  # noqa: F401 (a fixture)
from test_nemo_chat import ScriptedCompletion, ScriptedEngine
from test_ui_browser import type_and_send


def wait_for(condition, timeout_s: float = 30) -> None:
    """Until `condition()` holds (what the page's event did on the server), at most `timeout_s`."""
    import time

    ends = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < ends, "the change never arrived"
        time.sleep(0.05)


class PageEngine(ScriptedEngine):
    """The scripted NeMo, with what the page's other calls need (titles: `text()`, closing)."""

    def unload(self) -> None:
        pass

    def complete(self, prompt_ids, sampling, cancel=None, progress=None, decoder=None):
        self.prompts.append(list(prompt_ids))
        reply = self.replies.pop(0) if self.replies else self.tekken().encode("Notes")
        completion = ScriptedCompletion(reply, cancel=cancel)
        completion.text = lambda: self.tekken().decode(reply)
        return completion


@pytest.fixture()
def served_nemo(demo, tiny_nemo_gguf, home):
    from app.services.root import Services
    from app.ui import build_app, launch

    tekken = tk.Tekken.from_gguf(tiny_nemo_gguf)
    engine = PageEngine(tiny_nemo_gguf, [nemo_call(tekken, "add_note", {"text": "buy milk"}, "note00001"),
                                         tekken.encode("All right, I wrote nothing.")])
    save_settings(Settings(model=str(tiny_nemo_gguf), n_ctx=512, tools="calculator"))
    services = Services(engine=engine)
    demo_app, style = build_app(services=services)
    port = free_port()
    launch(demo_app, style, port=port, block=False)
    yield services, f"http://127.0.0.1:{port}/", demo
    demo_app.close()
    services.close()


def test_a_tool_that_changes_things_asks_first_and_deny_leaves_a_step(served_nemo, page, artifacts):
    services, url, (notes, _) = served_nemo
    page.goto(url)
    type_and_send(page, "Please note: buy milk")
    deny = page.locator("#chatbot button", has_text="Deny")
    deny.wait_for(timeout=60_000)
    chat = page.locator("#chatbot").inner_text()
    assert "NeMo wants to run add_note from the MCP server demo" in chat and '"buy milk"' in chat
    assert page.locator("#chatbot button", has_text="Allow once").is_visible()
    assert page.locator("#chatbot button", has_text="Always for this tool").is_visible()
    page.screenshot(path=str(artifacts / "ui-mcp-approval.png"), full_page=True)
    deny.click()
    page.locator("#chatbot", has_text="All right, I wrote nothing.").wait_for(timeout=60_000)
    page.locator("#chatbot", has_text="Tool: add_note").wait_for(timeout=30_000)
    page.locator("#chatbot").get_by_text("Tool: add_note").first.click()  # open the step
    page.locator("#chatbot", has_text="You denied this call; the tool did not run.").wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "ui-mcp-denied.png"), full_page=True)
    assert not notes.exists(), "the denied tool never ran"
    [conversation] = services.history.conversations()
    step = next(json.loads(m["content"]) for m in services.history.messages(conversation["id"]) if m["role"] == "tool")
    assert step["denied"] is True and step["name"] == "add_note"


def test_settings_list_the_servers_their_tools_and_test_them(served_nemo, page, artifacts):
    services, url, _ = served_nemo
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#mcp-section").click()
    table = page.locator("#mcp-servers")
    table.get_by_text("not started").first.wait_for(timeout=30_000)
    assert "demo" in table.inner_text() and "missing" in table.inner_text()
    page.locator("#mcp-test").click()  # the first server, demo, is chosen
    page.locator("#mcp-test-result", has_text="demo runs and lists 5 tools").wait_for(timeout=60_000)
    assert "running" in table.inner_text()
    tools = page.locator("#mcp-tools")
    note = tools.get_by_label("demo · add_note (asks first)")
    assert note.is_checked() and tools.get_by_label("demo · shout").is_checked()
    note.uncheck()
    wait_for(lambda: not ToolChoices().is_on("demo/add_note"))  # kept in mcp-tools.json
    page.screenshot(path=str(artifacts / "ui-mcp-settings.png"), full_page=True)
    assert ToolChoices().is_on("demo/shout")
    assert "add_note" not in [t.name for t in services.tools.offered(services.settings)]

    page.locator("#mcp-server input").click()
    page.get_by_role("option", name="missing").click()
    page.locator("#mcp-test").click()
    page.locator("#mcp-test-result", has_text="missing failed:").wait_for(timeout=60_000)
