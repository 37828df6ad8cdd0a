"""Settings' "Tools from MCP servers" section: each server of `mcp.json` with its state, its tools
(each on or off, kept in `mcp-tools.json`) and a Test button. Servers start when their tools are
first needed (a chat with tools, or Test); opening the page starts none."""

from __future__ import annotations

import gradio as gr

from app.faces.i18n import in_page_language, language_of, say, t, text
from app.faces.safe_markdown import safe_markdown
from app.services.mcp_client import FAILED, RUNNING
from app.services.mcp_config import mcp_config_path
from app.services.root import Services

STATE_KEYS = {RUNNING: "settings_mcp_running", FAILED: "settings_mcp_failed"}  # else: not started


def servers_table(services: Services, language: str) -> str:
    """A Markdown table of the servers (or why there is none)."""
    servers = services.mcp
    if servers.problem:
        return text(language, "common_warning", message=servers.problem)
    if not servers.names:
        return text(language, "settings_mcp_none", path=mcp_config_path())
    rows = [f"| {text(language, 'settings_mcp_server')} | {text(language, 'settings_mcp_transport')} | "
            f"{text(language, 'settings_mcp_state')} | {text(language, 'settings_mcp_tool_count')} |", "|---|---|---|---|"]
    for name in servers.names:
        status = servers.status(name)
        state = text(language, STATE_KEYS.get(status.state, "settings_mcp_idle"), error=_cell(status.error))
        rows.append(f"| {_cell(name)} | {status.transport} | {state} | {len(status.tools) or '–'} |")
    return text(language, "settings_mcp_file", path=mcp_config_path()) + "\n\n" + "\n".join(rows)


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def tool_choices(services: Services, language: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(label, key) of every MCP tool of the servers started so far, and the keys switched on."""
    choices, on = [], []
    for name in services.mcp.names:
        for tool in services.mcp.status(name).tools:
            asks = "" if tool.read_only else f" ({text(language, 'settings_mcp_asks')})"
            choices.append((f"{name} · {tool.name}{asks}", tool.key))
            if services.tools.choices.is_on(tool.key):
                on.append(tool.key)
    return choices, on


def mcp_section(services: Services) -> None:
    """Inside the current Blocks (the Settings tab)."""
    with gr.Accordion(t("settings_mcp_title"), open=False, elem_id="mcp-section"):
        table = safe_markdown("", elem_id="mcp-servers")
        tools = gr.CheckboxGroup([], label=t("settings_mcp_tools"), elem_id="mcp-tools")
        with gr.Row(equal_height=True):
            server = gr.Dropdown(services.mcp.names, value=next(iter(services.mcp.names), None),
                                 label=t("settings_mcp_server"), elem_id="mcp-server", scale=3)
            test = gr.Button(t("settings_mcp_test"), elem_id="mcp-test", scale=1)
        result = safe_markdown("", elem_id="mcp-test-result")

    def shown(request: gr.Request):
        language = language_of(request)
        choices, on = tool_choices(services, language)
        return servers_table(services, language), gr.update(choices=choices, value=on)

    def tested(name, request: gr.Request):
        if not name:
            return gr.skip(), gr.skip(), say(request, "settings_mcp_pick")
        status = services.mcp.restart(name)
        line = say(request, "settings_mcp_test_ok", server=name, count=len(status.tools)) if status.state == RUNNING \
            else say(request, "settings_mcp_test_failed", server=name, error=status.error)
        return *shown(request), line

    def switched(keys, request: gr.Request):
        choices, _ = tool_choices(services, language_of(request))
        for _, key in choices:
            services.tools.choices.set_on(key, key in (keys or []))

    in_page_language(shown, None, [table, tools])
    test.click(tested, server, [table, tools, result])
    tools.input(switched, tools, None)
