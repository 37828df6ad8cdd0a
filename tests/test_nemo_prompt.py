"""NeMo prompts against mistral-common's `encode_chat_completion` (V3-Tekken), and tool-call parsing."""

import json

import pytest
from mistral_common.protocol.instruct.messages import AssistantMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import FunctionCall
from mistral_common.protocol.instruct.tool_calls import ToolCall as OracleCall
from tekken_corpus import CORPUS

from app.base.errors import UserError
from app.nemo.prompt import (
    CALL_ID_RE,
    ToolCall,
    encode_chat,
    encode_request,
    is_tool_call_reply,
    parse_tool_calls,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
        "strict": True,
    },
}
CALC = {"type": "function", "function": {"name": "calculator", "parameters": {"type": "object", "properties": {}}}}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


def call(call_id, name, arguments):
    function = {"name": name, "arguments": arguments}
    return {"id": call_id, "type": "function", "function": function}


def calls(*entries):
    return {"role": "assistant", "content": None, "tool_calls": list(entries)}


def result(call_id, content):
    return {"role": "tool", "tool_call_id": call_id, "content": content}


SHAPES = {
    "one user": ([user("Hello")], None),
    "system only": ([system("You are a poet.")], None),
    "one system": ([system("Be brief."), user("Hi there")], None),
    "several systems": ([system("Be brief."), system("Answer in French."), user("Hi"), assistant("Salut !"), user("Why?")], None),
    "multi-turn": ([user("2+2?"), assistant("4"), user("And 3+3?"), assistant("6"), user("Thanks")], None),
    "trailing spaces": ([user("Hi  "), assistant("Hello there   "), user("  again ")], None),
    "multilingual": ([system(CORPUS["de"]), *[user(CORPUS[k]) if i % 2 == 0 else assistant(CORPUS[k]) for i, k in enumerate(CORPUS)], user("?")], None),
    "system between user messages": ([user("one"), system("Be kind."), user("two")], None),
    "typed control strings": ([user(CORPUS["controls"]), assistant("[TOOL_CALLS] </s>"), user("[/INST]")], [WEATHER]),
    "merged same-role messages": ([user("first"), user("second"), assistant("a"), assistant("b"), user("third")], None),
    "starts with assistant": ([assistant("Welcome!"), user("Hi")], None),
    "text parts": ([{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}], None),
    "tools offered": ([system("Use tools."), user("Weather in Paris?")], [WEATHER, CALC]),
    "tools with history": ([user("Hi"), assistant("Hello"), user("Weather in Paris?")], [WEATHER]),
    "tool call with JSON result": (
        [user("Weather in Paris?"), calls(call("abcDEF123", "get_weather", '{"city": "Paris"}')),
         result("abcDEF123", '{"temperature": 21, "sky": "clear"}')],
        [WEATHER],
    ),
    "tool call with text result": (
        [user("Weather in Paris?"), calls(call("abcDEF123", "get_weather", {"city": "Paris", "unit": "c"})),
         result("abcDEF123", "Sunny, 21 degrees")],
        [WEATHER],
    ),
    "parallel tool calls": (
        [system("Be exact."), user("Weather in Paris and Tokyo?"),
         calls(call("aaaaaaaa1", "get_weather", '{"city": "Paris"}'), call("bbbbbbbb2", "get_weather", '{"city": "東京"}')),
         result("aaaaaaaa1", '{"temperature": 21}'), result("bbbbbbbb2", "Regen, 14 °C")],
        [WEATHER],
    ),
    "ends in a tool result with a system prompt": (
        [system("Answer in one line."), user("What is 6*7?"), calls(call("Calc00001", "calculator", '{"expression": "6*7"}')),
         result("Calc00001", "42")],
        [CALC],
    ),
    "tool call, answer, new question": (
        [user("Weather in Paris?"), calls(call("abcDEF123", "get_weather", '{"city": "Paris"}')),
         result("abcDEF123", '{"temperature": 21}'), assistant("It is 21 °C in Paris.  "), user("And in Rome?")],
        [WEATHER],
    ),
    "odd arguments and empty result": (
        [user("go"), calls(call("abcDEF123", "calculator", ""), call("abcDEF124", "calculator", "not json")),
         result("abcDEF123", ""), result("abcDEF124", "[1, 2]")],
        [CALC],
    ),
}




def oracle_ids(oracle, messages, tools):
    request = ChatCompletionRequest.from_openai(messages=messages, tools=tools)
    return oracle.encode_chat_completion(request).tokens


@pytest.mark.parametrize("shape", SHAPES)
def test_prompt_matches_mistral_common(tekken, oracle, shape):
    messages, tools = SHAPES[shape]
    assert encode_chat(tekken, messages, tools) == oracle_ids(oracle, messages, tools)


def test_guide_example(tekken):
    assert encode_chat(tekken, [user("Hello")]) == [1, 3, 22177, 4]


def test_encode_request(tekken, oracle):
    messages, tools = SHAPES["parallel tool calls"]
    request = json.loads(json.dumps({"messages": messages, "tools": tools}))
    assert encode_request(tekken, request) == oracle_ids(oracle, messages, tools)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ([], '"messages" list'),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"content": "hi"}]}, "message 0: role must be"),
        ({"messages": ["hi"]}, "message 0: not a JSON object"),
        ({"messages": [user("hi"), {"role": "assistant"}]}, "neither text nor tool calls"),
        ({"messages": [user("hi"), {"role": "assistant", "content": "x", "tool_calls": [call("abcDEF123", "f", "{}")]}]}, "both"),
        ({"messages": [user("hi"), calls(call("short", "f", "{}"))]}, "9 letters or digits"),
        ({"messages": [user("hi"), calls(call("abcDEF123", "bad name!", "{}"))]}, "function name"),
        ({"messages": [user("hi"), result("nope", "x")]}, "tool_call_id"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}, "text parts"),
        ({"messages": [user("hi")], "tools": [{"type": "function"}]}, "tool 0"),
        ({"messages": [user("hi")], "tools": ["calculator"]}, "tool 0"),
    ],
)
def test_malformed_requests(tekken, request_, message):
    with pytest.raises(UserError, match=message):
        encode_request(tekken, request_)


def oracle_reply(oracle, *entries):
    """The ids mistral-common writes for an assistant turn with these (name, arguments, id) calls."""
    message = AssistantMessage(
        tool_calls=[OracleCall(id=i, function=FunctionCall(name=n, arguments=a)) for n, a, i in entries]
    )
    return oracle.instruct_tokenizer.encode_assistant_message(message, False)


def test_parse_tool_calls_from_oracle_ids(tekken, oracle):
    ids = oracle_reply(oracle, ("get_weather", {"city": "Zürich"}, "abcDEF123"), ("calculator", "{}", "Xyz987654"))
    assert is_tool_call_reply(ids) and ids[-1] == 2
    assert parse_tool_calls(ids, tekken) == [
        ToolCall("get_weather", {"city": "Zürich"}, "abcDEF123"),
        ToolCall("calculator", {}, "Xyz987654"),
    ]


def test_parse_tool_calls_from_text():
    text = '[TOOL_CALLS][{"name": "calculator", "arguments": "{\\"expression\\": \\"1+1\\"}"}]'
    (parsed,) = parse_tool_calls(text)
    assert (parsed.name, parsed.arguments, parsed.error) == ("calculator", {"expression": "1+1"}, None)
    assert CALL_ID_RE.fullmatch(parsed.id)  # a missing id is made up
    assert [c.name for c in parse_tool_calls('[{"name": "a"}] [{"name": "b"}]')] == ["a", "b"]


def test_plain_reply_has_no_calls(tekken):
    assert parse_tool_calls(tekken.encode("Just text") + [2], tekken) == []
    assert not is_tool_call_reply([])


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[{"name": "calculator", "arguments": {"expression": "1+', "not valid JSON"),
        ("[]", "empty"),
        ('[{"arguments": {}}]', '"name"'),
        ('[{"name": "calculator", "arguments": [1, 2]}]', "arguments must be a JSON object"),
    ],
)
def test_malformed_tool_calls_give_errors(text, error):
    (parsed,) = parse_tool_calls(text)
    assert error in parsed.error and CALL_ID_RE.fullmatch(parsed.id)


def test_tool_call_round_trips_through_messages(tekken, oracle):
    parsed = ToolCall("get_weather", {"city": "Paris"}, "abcDEF123")
    messages = [user("Weather?"), {"role": "assistant", "content": None, "tool_calls": [parsed.to_openai()]}]
    messages.append(result(parsed.id, '{"temperature": 21}'))
    ids = encode_chat(tekken, messages, [WEATHER])
    assert ids == oracle_ids(oracle, messages, [WEATHER])
    start = ids.index(9)
    assert parse_tool_calls(ids[start : ids.index(2, start) + 1], tekken) == [parsed]
