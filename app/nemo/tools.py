"""Built-in tools for NeMo's native function calling, and the bounded loop that runs them.

Tools: the current date and time, a calculator (an `ast` walk over numbers, arithmetic and a few
math functions; nothing is evaluated as Python), and a search of the saved conversations through
a function the caller passes in. Nothing here runs code that a model or a user wrote.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import threading
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.nemo import tekken as tk
from app.nemo.call_schema import tool_calls_schema
from app.nemo.prompt import NAME_RE, ToolCall, encode_chat, is_tool_call_reply, parse_tool_calls


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


@dataclass(frozen=True)
class Tool:
    """A function the model may call: `run(**arguments)` returns a JSON-able result. `server`
    names the MCP server a tool comes from ("" for a built-in); a tool that is not `read_only`
    may change things, so a person approves its calls."""

    name: str
    description: str
    parameters: dict
    run: Callable[..., Any]
    server: str = ""
    read_only: bool = True

    def schema(self) -> dict:
        """The OpenAI-style function schema offered to the model."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


def _object(properties: dict, required: Sequence[str] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required)}


# --- date and time ---------------------------------------------------------------------------


def current_datetime(timezone: str = "") -> dict:
    """Now, in an IANA time zone (e.g. "Europe/Paris"), or in the computer's own."""
    try:
        now = datetime.now(ZoneInfo(timezone)) if timezone else datetime.now().astimezone()
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {timezone!r}; use an IANA name such as Europe/Paris") from None
    return {"datetime": now.isoformat(timespec="seconds"), "weekday": now.strftime("%A"), "timezone": timezone or now.tzname()}


DATETIME_TOOL = Tool(
    "current_datetime",
    "Get the current date, time and weekday, optionally in a given IANA time zone.",
    _object({"timezone": {"type": "string", "maxLength": 64,
                          "description": 'IANA time zone, e.g. "Asia/Tokyo"; omit for local time'}}),
    current_datetime,
)


# --- calculator ------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 500
MAX_INT_BITS = 4096  # about 1,200 decimal digits
MAX_FACTORIAL = 500

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _factorial(n: Any) -> int:
    if not isinstance(n, int) or not 0 <= n <= MAX_FACTORIAL:
        raise ToolError(f"factorial takes a whole number from 0 to {MAX_FACTORIAL}")
    return math.factorial(n)


def _round(x: Any, digits: Any = 0) -> int | float:
    if not isinstance(digits, int) or abs(digits) > 100:
        raise ToolError("round takes a whole number of digits from -100 to 100")
    return round(x, digits) if digits else round(x)


_FUNCTIONS = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "abs": abs, "floor": math.floor, "ceil": math.ceil, "round": _round,
    "factorial": _factorial,
}  # fmt: skip


def calculate(expression: str) -> int | float:
    """The value of an arithmetic expression such as "2 * (3 + 4) ** 2 / sqrt(7)"."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        return _evaluate(ast.parse(expression.strip(), mode="eval").body)
    except SyntaxError as e:
        raise ToolError(f"not an arithmetic expression ({e.msg})") from None
    except (ArithmeticError, ValueError, TypeError) as e:
        raise ToolError(f"cannot compute this: {e}") from None
    except RecursionError:
        raise ToolError("the expression is nested too deeply") from None


def _evaluate(node: ast.AST) -> int | float:
    match node:
        case ast.Constant(value=value) if type(value) in (int, float):
            return value
        case ast.Name(id=name) if name in _CONSTANTS:
            return _CONSTANTS[name]
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            return _UNARY[type(op)](_evaluate(operand))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _evaluate(left), _evaluate(right)
            if isinstance(op, ast.Pow):
                _check_power(a, b)
            return _checked(_BINARY[type(op)](a, b))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _FUNCTIONS:
            return _checked(_FUNCTIONS[name](*map(_evaluate, args)))
    raise ToolError(f"not allowed in a calculation: {ast.unparse(node)[:60]!r}")


def _check_power(base: int | float, exponent: int | float) -> None:
    """Refuse powers whose result would be a huge integer, before computing them."""
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise ToolError(f"the result would have more than {MAX_INT_BITS} bits")


def _checked(value: Any) -> int | float:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"the result has more than {MAX_INT_BITS} bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    if not isinstance(value, (int, float)):
        raise ToolError("the result is not a real number")
    return value


CALCULATOR_TOOL = Tool(
    "calculator",
    "Evaluate an arithmetic expression exactly: + - * / // % **, parentheses, pi, e, and "
    "sqrt, exp, log, log10, log2, sin, cos, tan, asin, acos, atan, abs, floor, ceil, round, factorial.",
    _object({"expression": {"type": "string", "maxLength": MAX_EXPRESSION_CHARS,
                            "description": 'e.g. "(17 * 23) / sqrt(2)"'}}, ["expression"]),
    lambda expression: {"expression": expression, "result": calculate(expression)},
)


# --- conversation search ---------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    """One match in the saved conversations."""

    conversation_id: int | str
    title: str
    snippet: str


ConversationSearch = Callable[[str], Iterable[SearchHit]]
MAX_HITS = 10
MAX_QUERY_CHARS = 200
MAX_SNIPPET_CHARS = 400


def search_tool(search: ConversationSearch) -> Tool:
    """A tool that searches the saved conversations with `search(query)`."""

    def run(query: str, limit: int = 5) -> dict:
        if not str(query).strip():
            raise ToolError("the query is empty")
        hits = list(search(str(query)))[: max(1, min(int(limit), MAX_HITS))]
        return {
            "query": query,
            "hits": [
                {"conversation_id": h.conversation_id, "title": h.title, "snippet": h.snippet[:MAX_SNIPPET_CHARS]}
                for h in hits
            ],
        }

    parameters = _object(
        {
            "query": {"type": "string", "maxLength": MAX_QUERY_CHARS, "description": "words to look for"},
            "limit": {"type": "integer", "description": f"most hits to return (1-{MAX_HITS}, default 5)"},
        },
        ["query"],
    )
    return Tool("search_conversations", "Search the user's saved conversations for earlier messages.", parameters, run)


def builtin_tools(search: ConversationSearch | None = None) -> list[Tool]:
    """The date/time and calculator tools, and conversation search when `search` is given."""
    return [DATETIME_TOOL, CALCULATOR_TOOL, *([search_tool(search)] if search else [])]


# --- the tool loop ---------------------------------------------------------------------------

Generate = Callable[[list[int], "dict | None"], Iterable[int]]  # prompt ids, the schema a required call matches


@dataclass(frozen=True)
class ToolStep:
    """One call the model made and what it got back (`error` set when the call failed)."""

    call: ToolCall
    result: Any
    error: str | None
    round: int
    denied: bool = False  # the person said no: the tool did not run

    @property
    def content(self) -> str:
        """The tool message's content as the model reads it."""
        return json.dumps({"error": self.error} if self.error else self.result, ensure_ascii=False, default=str)


ALLOW_ONCE, ALLOW_ALWAYS, DENY = "once", "always", "deny"  # a person's answer to an Approval
DENIED = "the user denied this call; the tool did not run"


class Approval:
    """A call waiting for a person's yes or no; `decide` may come from any thread."""

    def __init__(self, call: ToolCall, tool: Tool, on_decided: Callable[[str], None] = lambda _: None) -> None:
        self.call, self.tool, self._on_decided = call, tool, on_decided
        self._answer: str | None = None
        self._event = threading.Event()

    def decide(self, answer: str) -> None:
        """ALLOW_ONCE, ALLOW_ALWAYS or DENY; the first answer counts."""
        if answer not in (ALLOW_ONCE, ALLOW_ALWAYS, DENY) or self._event.is_set():
            return
        self._answer = answer
        self._on_decided(answer)
        self._event.set()

    @property
    def answer(self) -> str | None:
        return self._answer

    def wait(self, stopped: Callable[[], bool], every_s: float = 0.1) -> str | None:
        """The answer, or None when `stopped()` became true first."""
        while not self._event.wait(every_s):
            if stopped():
                return None
        return self._answer


Approve = Callable[[ToolCall, Tool], "Approval | None"]  # an Approval to wait for, or None: run at once


@dataclass(frozen=True)
class TextDelta:
    """New text of the final answer, as it streams."""

    text: str


@dataclass(frozen=True)
class Answer:
    """The end of the loop: the answer, the conversation with the tool turns and the answer
    appended, how many tool rounds ran, and why it ended ("stop", "stopped" or "max_rounds")."""

    text: str
    ids: list[int]
    messages: list[dict]
    rounds: int
    finish: str


def run_tool_loop(
    generate: Generate,
    tekken: tk.Tekken,
    messages: Sequence[dict],
    tools: Sequence[Tool],
    max_rounds: int = 4,
    stopped: Callable[[], bool] = lambda: False,
    approve: Approve | None = None,
    tool_choice: str = "auto",
) -> Iterator[ToolStep | TextDelta | Approval | Answer]:
    """Generate, run the calls of a `[TOOL_CALLS]` reply, feed the results back, repeat.

    `generate(prompt_ids, calls_schema)` yields the reply's ids (the engine seam); a schema
    means the reply must be calls that match it. With `tool_choice` "required" or a tool's
    name, the first reply is a call: the prompt ends with `[TOOL_CALLS]` and the calls are held
    to the offered tools' schemas (app/nemo/call_schema.py); later rounds are free ("auto").
    Yields each `ToolStep`, the answer's `TextDelta`s, then one `Answer`. A call `approve(call,
    tool)` gives an Approval for is yielded and waits for its answer (a Stop meanwhile ends the
    loop). After `max_rounds` rounds of calls the model is asked once more without tools, so it
    answers from what it has. A reply cut by a Stop (`stopped()`) ends the loop: a half-written
    call is never run. `messages` is not changed.
    """
    messages = list(messages)
    by_name = {tool.name: tool for tool in tools}
    schemas = [tool.schema() for tool in tools]
    for round_ in range(max_rounds + 1):
        offered = schemas if round_ < max_rounds else None
        calls_schema = None
        if round_ == 0 and offered and (tool_choice == "required" or tool_choice in by_name):
            calls_schema = tool_calls_schema(offered, None if tool_choice == "required" else tool_choice)
        reply: list[int] = [tk.TOOL_CALLS] if calls_schema else []
        decoder = tekken.stream_decoder()
        prompt = encode_chat(tekken, messages, offered) + reply
        with closing(_until_eos(generate(prompt, calls_schema))) as stream:
            for token in stream:
                reply.append(token)
                if not is_tool_call_reply(reply) and (delta := decoder.feed(token)):
                    yield TextDelta(delta)
        if stopped() and is_tool_call_reply(reply):
            yield Answer("", reply, messages, round_, "stopped")
            return
        if not is_tool_call_reply(reply):
            if tail := decoder.flush():
                yield TextDelta(tail)
            text = tekken.decode(reply)
            if text.strip():
                messages.append({"role": "assistant", "content": text})
            yield Answer(text, reply, messages, round_, "stop")
            return
        if offered is None:
            break
        calls = parse_tool_calls(reply, tekken)
        messages.append({"role": "assistant", "content": None, "tool_calls": [as_prompt_call(c).to_openai() for c in calls]})
        for call in calls:
            pending = approve(call, by_name[call.name]) if approve and not call.error and call.name in by_name else None
            if pending is not None:
                yield pending
                if pending.wait(stopped) is None:
                    yield Answer("", reply, messages, round_, "stopped")
                    return
            if pending is not None and pending.answer == DENY:
                step = ToolStep(call, None, DENIED, round_ + 1, denied=True)
            else:
                step = run_tool_call(call, by_name, round_ + 1)
            messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": step.content})
            yield step
    yield Answer("", reply, messages, max_rounds, "max_rounds")


def run_tool_call(call: ToolCall, tools: dict[str, Tool], round_: int = 1) -> ToolStep:
    """Run one call; a malformed call, an unknown tool or a failing tool gives an error step."""
    if call.error:
        return ToolStep(call, None, f"malformed tool call: {call.error}", round_)
    tool = tools.get(call.name)
    if tool is None:
        return ToolStep(call, None, f"unknown tool {call.name!r}; available: {', '.join(tools) or 'none'}", round_)
    try:
        return ToolStep(call, tool.run(**call.arguments), None, round_)
    except ToolError as e:
        return ToolStep(call, None, str(e), round_)
    except TypeError as e:
        return ToolStep(call, None, f"wrong arguments for {call.name}: {e}", round_)
    except Exception as e:  # a tool's failure is reported to the model, never raised
        return ToolStep(call, None, f"{call.name} failed: {type(e).__name__}: {e}", round_)


def as_prompt_call(call: ToolCall) -> ToolCall:
    """The call as it can be written back into the prompt or saved (a valid name even if malformed)."""
    return call if NAME_RE.fullmatch(call.name) else ToolCall("invalid_tool_call", {}, call.id, call.error)


def _until_eos(ids: Iterable[int]) -> Iterator[int]:
    """The reply's ids up to `</s>`; the engine's stream is closed when the reply ends."""
    stream = iter(ids)
    try:
        for token in stream:
            if token == tk.EOS:
                return
            yield token
    finally:
        getattr(stream, "close", lambda: None)()
