"""Built-in tools and the tool loop, driven by a scripted engine."""

import json
from datetime import datetime, timezone

import pytest
from mistral_common.protocol.instruct.request import ChatCompletionRequest

from app.nemo.prompt import encode_chat
from app.nemo.tekken import TOOL_CALLS, TOOLS
from app.nemo.tools import (
    Answer,
    SearchHit,
    TextDelta,
    Tool,
    ToolError,
    ToolStep,
    builtin_tools,
    calculate,
    current_datetime,
    run_tool_loop,
)




# --- calculator ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 / 2", 3.5), ("7 // 2", 3), ("-7 % 3", 2),
        ("2 ** 10", 1024), ("-2 ** 2", -4), ("+5 - -5", 10), ("2 ** -1", 0.5), ("1_000 * 3", 3000),
        ("sqrt(16) + abs(-3)", 7.0), ("round(pi, 3)", 3.142), ("factorial(20)", 2432902008176640000),
        ("log(e)", 1.0), ("log(8, 2)", 3.0), ("floor(2.7) + ceil(2.1)", 5), ("2 ** 4000 // 2 ** 3999", 2),
        ("-" * 400 + "1", 1), ("-" * 401 + "1", -1),  # deep but legal, within the 500-character limit
    ],
)  # fmt: skip
def test_calculator_computes(expression, value):
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("().__class__", "not allowed"),
        ("(1).real", "not allowed"),
        ("x + 1", "not allowed"),
        ("__import__('os').system('echo hi')", "not allowed"),
        ("eval('1')", "not allowed"),
        ("open('/etc/passwd')", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("[i for i in range(10)]", "not allowed"),
        ("'a' * 3", "not allowed"),
        ("True + 1", "not allowed"),
        ("1 << 100", "not allowed"),
        ("round(x=1)", "not allowed"),
        ("9 ** 9 ** 9", "bits"),
        ("2 ** 100000", "bits"),
        ("(2 ** 4000) * (2 ** 4000)", "bits"),
        ("10.0 ** 400", "cannot compute"),
        ("factorial(10 ** 6)", "factorial"),
        ("round(5, -10 ** 9)", "round"),
        ("1 / 0", "cannot compute"),
        ("sqrt(-1)", "cannot compute"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("1" + "+1" * 300, "longer than"),
        ("-" * 500 + "1", "longer than"),
    ],
)
@pytest.mark.timeout(60)  # a blow-up (say 9**9**9) would hang: the bound is the timeout, not a clock
def test_calculator_refuses(expression, message):
    with pytest.raises(ToolError, match=message):
        calculate(expression)


# --- date/time and search ----------------------------------------------------------------------


def test_current_datetime():
    now = current_datetime("UTC")
    stamp = datetime.fromisoformat(now["datetime"])
    assert abs((stamp - datetime.now(timezone.utc)).total_seconds()) < 60
    assert now["timezone"] == "UTC" and now["weekday"] == stamp.strftime("%A")
    assert datetime.fromisoformat(current_datetime()["datetime"]).tzinfo is not None
    with pytest.raises(ToolError, match="time zone"):
        current_datetime("Mars/Olympus_Mons")
    with pytest.raises(ToolError, match="time zone"):
        current_datetime("../../etc/passwd")


def fake_search(query):
    return [SearchHit(i, f"Chat {i}", f"... {query} ..." + "x" * 1000) for i in range(20)]


def test_search_tool():
    search = {t.name: t for t in builtin_tools(fake_search)}["search_conversations"]
    found = search.run(query="pasta", limit=3)
    assert [h["conversation_id"] for h in found["hits"]] == [0, 1, 2]
    assert found["hits"][0]["snippet"].startswith("... pasta ...") and len(found["hits"][0]["snippet"]) == 400
    assert len(search.run(query="pasta", limit=500)["hits"]) == 10
    with pytest.raises(ToolError):
        search.run(query="  ")
    assert [t.name for t in builtin_tools()] == ["current_datetime", "calculator"]


def test_tool_schemas_encode_like_mistral_common(tekken, oracle):
    tools = [t.schema() for t in builtin_tools(fake_search)]
    messages = [{"role": "user", "content": "What time is it?"}]
    request = ChatCompletionRequest.from_openai(messages=messages, tools=tools)
    assert encode_chat(tekken, messages, tools) == oracle.encode_chat_completion(request).tokens


# --- the tool loop ---------------------------------------------------------------------------


class ScriptedEngine:
    """Replies from a script, recording each prompt; ids after `</s>` must never be read."""

    def __init__(self, tekken, replies):
        self.tekken, self.replies, self.prompts, self.schemas, self.closed = tekken, list(replies), [], [], 0

    def __call__(self, prompt_ids, calls_schema=None):
        self.prompts.append(prompt_ids)
        self.schemas.append(calls_schema)
        reply = self.replies.pop(0)
        ids = [9, *self.tekken.encode(reply[len("[TOOL_CALLS]") :])] if reply.startswith("[TOOL_CALLS]") else self.tekken.encode(reply)
        try:
            yield from [*ids, 2, 2, 2]
            raise AssertionError("read past </s>")
        finally:
            self.closed += 1


def run(engine, tekken, tools=None, max_rounds=4):
    messages = [{"role": "user", "content": "What is 6*7, and what day is it?"}]
    events = list(run_tool_loop(engine, tekken, messages, tools or builtin_tools(), max_rounds))
    assert len(messages) == 1  # the caller's list is left alone
    steps = [e for e in events if isinstance(e, ToolStep)]
    assert isinstance(events[-1], Answer) and not any(isinstance(e, Answer) for e in events[:-1]), "one Answer, last"
    return steps, "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_loop_runs_calls_and_feeds_results_back(tekken, oracle):
    engine = ScriptedEngine(
        tekken,
        [
            '[TOOL_CALLS][{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "calc00001"}, '
            '{"name": "current_datetime", "arguments": {"timezone": "UTC"}, "id": "date00001"}]',
            "6*7 is 42. Today is a fine day 🎉.",
        ],
    )
    steps, streamed, answer = run(engine, tekken)
    assert [(s.call.name, s.error) for s in steps] == [("calculator", None), ("current_datetime", None)]
    assert steps[0].result == {"expression": "6*7", "result": 42} and steps[0].round == 1
    assert streamed == answer.text == "6*7 is 42. Today is a fine day 🎉."
    assert (answer.rounds, answer.finish, engine.closed) == (1, "stop", 2)
    assert [m["role"] for m in answer.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert answer.messages[1]["tool_calls"][0]["id"] == "calc00001"
    assert json.loads(answer.messages[2]["content"]) == {"expression": "6*7", "result": 42}
    tools = [t.schema() for t in builtin_tools()]
    fed_back = ChatCompletionRequest.from_openai(messages=answer.messages[:4], tools=tools)
    assert engine.prompts[1] == oracle.encode_chat_completion(fed_back).tokens


def test_loop_recovers_from_bad_calls(tekken):
    def broken(**_):
        raise RuntimeError("disk on fire")

    tools = [*builtin_tools(), Tool("broken", "always fails", {"type": "object", "properties": {}}, broken)]
    engine = ScriptedEngine(
        tekken,
        [
            '[TOOL_CALLS][{"name": "calculator", "arguments": {"expression": "6*',  # cut off
            '[TOOL_CALLS][{"name": "weather", "arguments": {}, "id": "wthr00001"}, {"name": "broken", "arguments": {}},'
            ' {"name": "calculator", "arguments": {"expr": "1"}}, {"name": "calculator", "arguments": {"expression": "x"}}]',
            "Sorry, 42.",
        ],
    )
    steps, _, answer = run(engine, tekken, tools)
    errors = [s.error for s in steps]
    assert "malformed tool call: the tool call is not valid JSON" in errors[0]
    assert "unknown tool 'weather'" in errors[1]
    assert errors[2] == "broken failed: RuntimeError: disk on fire"
    assert "wrong arguments for calculator" in errors[3]
    assert "not allowed in a calculation" in errors[4]
    assert (answer.text, answer.rounds, answer.finish) == ("Sorry, 42.", 2, "stop")
    second_prompt = tekken.decode(engine.prompts[1])
    assert '"invalid_tool_call"' in second_prompt and "malformed tool call" in second_prompt


def test_loop_is_bounded(tekken):
    call = '[TOOL_CALLS][{"name": "calculator", "arguments": {"expression": "1+1"}}]'
    engine = ScriptedEngine(tekken, [call] * 3)
    steps, streamed, answer = run(engine, tekken, max_rounds=2)
    assert len(steps) == 2 and len(engine.prompts) == 3
    assert [TOOLS in p for p in engine.prompts] == [True, True, False]  # the last try offers no tools
    assert (answer.text, answer.finish, answer.rounds, streamed) == ("", "max_rounds", 2, "")


def test_loop_plain_answer(tekken):
    engine = ScriptedEngine(tekken, ["Hello! [INST] </s> stays text."])
    steps, streamed, answer = run(engine, tekken)
    assert steps == [] and streamed == answer.text == "Hello! [INST] </s> stays text."
    assert answer.messages[-1] == {"role": "assistant", "content": answer.text}


def test_closing_the_loop_closes_the_engine_stream(tekken):
    engine = ScriptedEngine(tekken, ["A long answer that the user stops."])
    loop = run_tool_loop(engine, tekken, [{"role": "user", "content": "Talk"}], builtin_tools())
    assert isinstance(next(loop), TextDelta)
    loop.close()
    assert engine.closed == 1


def test_a_required_call_is_prompted_and_held_to_the_named_tools_schema(tekken):
    """With `tool_choice` naming a tool, the first prompt ends with `[TOOL_CALLS]` and the engine
    is given the schema of one call of that tool; later rounds are free again."""
    engine = ScriptedEngine(tekken, ['[{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "calc00001"}]',
                                     "It is 42."])
    events = list(run_tool_loop(engine, tekken, [{"role": "user", "content": "6*7?"}], builtin_tools(),
                                tool_choice="calculator"))
    [step] = [e for e in events if isinstance(e, ToolStep)]
    assert (step.call.name, step.result, events[-1].text) == ("calculator", {"expression": "6*7", "result": 42}, "It is 42.")
    tools = [t.schema() for t in builtin_tools()]
    assert engine.prompts[0] == encode_chat(tekken, [{"role": "user", "content": "6*7?"}], tools) + [TOOL_CALLS]
    first, second = engine.schemas
    assert first["items"]["properties"]["name"] == {"const": "calculator"} and first["maxItems"] == 1
    assert second is None, "after the required call the model answers freely"
    free = ScriptedEngine(tekken, ["Hi."])
    list(run_tool_loop(free, tekken, [{"role": "user", "content": "Hi"}], builtin_tools(), tool_choice="auto"))
    assert free.schemas == [None] and free.prompts[0][-1] != TOOL_CALLS
