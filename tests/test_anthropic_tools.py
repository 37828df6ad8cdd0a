"""Anthropic's tool blocks are NeMo's native calls: `tool_use` and `tool_result` give the prompt
ids mistral-common gives the same conversation, and a `[TOOL_CALLS]` reply comes back as
`tool_use` blocks with NeMo's ids, whole or as events (a scripted NeMo reply: pure logic)."""

from __future__ import annotations

import json

from test_api import WEATHER, ScriptedNemo

from app.base.jobs import CancelToken
from app.nemo import tekken as tk
from app.nemo.tekken import Tekken
from app.services.anthropic_api import EventWriter, message_json, parse_messages
from app.services.openai_api import OpenAIService

TOOL = {"name": "get_weather", "description": WEATHER["function"]["description"],
        "input_schema": WEATHER["function"]["parameters"]}
ANTHROPIC = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "abcDEF123", "name": "get_weather",
                                       "input": {"city": "Paris"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "abcDEF123",
                                  "content": [{"type": "text", "text": '{"celsius": 21}'}]}]},
    {"role": "assistant", "content": "It is 21 °C in Paris."},
    {"role": "user", "content": "And in Lyon?"},
]
OPENAI = [
    {"role": "system", "content": "Use tools when they help."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "abcDEF123", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "abcDEF123", "content": '{"celsius": 21}'},
    {"role": "assistant", "content": "It is 21 °C in Paris."},
    {"role": "user", "content": "And in Lyon?"},
]
CALL = [{"name": "get_weather", "arguments": {"city": "Lyon"}, "id": "xyzXYZ789"}]


def test_tool_blocks_are_prompted_as_mistral_common_prompts_the_same_conversation(oracle):
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    expected = oracle.encode_chat_completion(ChatCompletionRequest.from_openai(messages=OPENAI, tools=[WEATHER])).tokens
    service = OpenAIService(lambda: ScriptedNemo([]), lambda: ["scripted"])
    request = parse_messages({"model": "scripted", "max_tokens": 50, "system": "Use tools when they help.",
                              "tools": [TOOL], "messages": ANTHROPIC})
    assert service.prompt_ids(request) == (expected, None)
    forced = parse_messages({"model": "scripted", "max_tokens": 50, "system": "Use tools when they help.",
                             "tools": [TOOL], "tool_choice": {"type": "tool", "name": "get_weather"},
                             "messages": ANTHROPIC})
    ids, calls_schema = service.prompt_ids(forced)
    assert ids == expected + [tk.TOOL_CALLS]
    assert calls_schema["items"]["properties"]["name"] == {"const": "get_weather"}, "held to the named tool"


def test_a_nemo_call_comes_back_as_tool_use_blocks_whole_and_streamed():
    engine = ScriptedNemo([tk.TOOL_CALLS, *Tekken.default().encode(json.dumps(CALL))])
    service = OpenAIService(lambda: engine, lambda: ["scripted"])
    request = parse_messages({"model": "scripted", "max_tokens": 50, "tools": [TOOL],
                              "messages": [{"role": "user", "content": "Weather in Lyon?"}]})
    deltas = list(service.run(request, CancelToken()))
    body = message_json(deltas, "scripted")
    use = {"type": "tool_use", "id": "xyzXYZ789", "name": "get_weather", "input": {"city": "Lyon"}}
    assert body["stop_reason"] == "tool_use" and body["content"] == [use]
    writer = EventWriter("scripted", 12)
    events = writer.start() + [event for delta in deltas for event in writer.events(delta)]
    assert [name for name, _ in events] == ["message_start", "content_block_start", "content_block_delta",
                                            "content_block_stop", "message_delta", "message_stop"]
    assert events[1][1]["content_block"] == {**use, "input": {}}
    assert json.loads(events[2][1]["delta"]["partial_json"]) == {"city": "Lyon"}
    assert events[4][1]["delta"]["stop_reason"] == "tool_use"
