"""The command line's tool commands: `tools list | call` (built-in and MCP tools) and `mcp`
(nemo-chat's own tools served to other agents). Parsing and printing only."""

from __future__ import annotations

import json
import os
import sys

from app.base.errors import UserError
from app.faces.cli_options import add_engine_options, add_json_option, add_model_options
from app.faces.locale_text import terminal_text
from app.nemo.tools import ToolError


def add_tool_commands(commands, parser_class) -> None:
    """The `tools` and `mcp` subcommands."""
    tools = commands.add_parser("tools", help="the tools NeMo may call: built-in and from MCP servers (mcp.json)")
    actions = tools.add_subparsers(dest="action", parser_class=parser_class)
    listing = actions.add_parser("list", help="every tool, with its server and whether NeMo is offered it (default)")
    add_json_option(listing)
    call = actions.add_parser("call", help="run one tool by its name, as NeMo would")
    call.add_argument("name")
    call.add_argument("--args", default="{}", metavar="JSON", help='its arguments as a JSON object, e.g. \'{"a": 1}\'')
    add_json_option(call)
    add_engine_options(tools)  # the built-in search needs none, but the services are built the same way

    mcp = commands.add_parser("mcp", help="serve nemo-chat's tools (summaries, translations, history search) "
                                          "to other agents over MCP: stdio, or Streamable HTTP with --http")
    mcp.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP at http://127.0.0.1:PORT/mcp")
    mcp.add_argument("--api-key", default=os.environ.get("NEMO_CHAT_API_KEY"), metavar="KEY",
                     help="with --http: every request needs Authorization: Bearer KEY (default: $NEMO_CHAT_API_KEY)")
    mcp.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                     help="with --http: also answer to this Host name (repeatable)")
    add_model_options(mcp)
    add_engine_options(mcp)


def run_tools(args, services_for) -> int:
    """`tools list` and `tools call`; `services_for(args)` builds the process's services."""
    with services_for(args) as services:
        if services.mcp.problem:
            raise services.mcp.problem
        if args.action == "call":
            return _call(services, args)
        rows = services.tools.listing(services.settings)
        statuses = [services.mcp.status(name) for name in services.mcp.names]
    if getattr(args, "json", False):
        print(json.dumps({"tools": [row.as_dict() for row in rows],
                          "servers": [{"name": s.name, "transport": s.transport, "state": s.state, "error": s.error,
                                       "tools": len(s.tools)} for s in statuses]}, ensure_ascii=False))
        return 0
    for row in rows:
        where = f"{row.server} (MCP)" if row.server else terminal_text("tools_built_in")
        flags = terminal_text("tools_on" if row.on else "tools_off") + \
            ("" if row.read_only else ", " + terminal_text("settings_mcp_asks"))
        print(f"{row.name:<28} {where:<22} {flags:<16} {row.description.splitlines()[0] if row.description else ''}")
    for status in statuses:
        if status.error:
            print("nemo-chat: " + terminal_text("tools_server_failed", name=status.name, error=status.error), file=sys.stderr)
    return 0


def _call(services, args) -> int:
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise UserError("tools_args_not_json", error=exc.msg) from None
    if not isinstance(arguments, dict):
        raise UserError("tools_args_not_object")
    try:
        result = services.tools.call(args.name, arguments, services.settings)
    except ToolError as exc:
        print(f"nemo-chat: {args.name}: {exc}", file=sys.stderr)
        return 1
    except TypeError as exc:
        raise UserError("tools_wrong_arguments", name=args.name, error=str(exc)) from None
    if args.json:
        print(json.dumps({"tool": args.name, "result": result}, ensure_ascii=False, default=str))
    else:
        print(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, indent=1, default=str))
    return 0


def run_mcp(args, services_for) -> int:
    """`nemo-chat mcp`: serve until the client goes away (stdio) or until interrupted (HTTP)."""
    from app.faces import mcp_server

    with services_for(args) as services:
        if args.http is None:
            mcp_server.serve_stdio(services)
        else:
            mcp_server.serve_http(services, args.http, args.api_key, args.allow_host)
    return 0
