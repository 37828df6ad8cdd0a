"""Required tool calls end to end on the real llama.cpp engine, with the tiny NeMo GGUF
(tests/tiny_nemo.py: random weights, real Tekken vocabulary): the API's `tool_calls`, the chat's
tool loop and its saved steps, Stop while a call is written, and the step in Chromium.

A random-weight model never chooses to call a tool; with a named or required tool choice the
engine writes `[TOOL_CALLS]` and the grammar of the offered tools' schemas holds the rest, so
every call here parses and names a real tool."""

from __future__ import annotations

import json
import re

import openai
import pytest

from app.base.config import Settings, save_settings
from app.base.jobs import CancelToken, no_progress
from app.engine.llama import LlamaEngine
from app.faces.api_server import ApiServer
from app.history import History
from app.nemo import tekken as tk
from app.nemo.call_schema import MAX_CALLS
from app.nemo.prompt import encode_chat
from app.runtime import SamplingOptions
from app.services.chat import ChatService
from app.services.root import Services
from conftest import free_port

CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"], "properties": {
        "city": {"type": "string", "maxLength": 24}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["zone"], "properties": {
        "zone": {"enum": ["UTC", "Europe/Paris"]}}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class RecordingEngine(LlamaEngine):
    """The real engine, recording each prompt; with `stop_at`, the user presses Stop as the
    first reply's `stop_at`-th token arrives (the real cancel token, honoured by the engine)."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.prompts, self.stop_at = [], stop_at

    def complete(self, prompt_ids, sampling=SamplingOptions(), cancel=None, progress=no_progress, decoder=None):
        self.prompts.append(list(prompt_ids))
        completion = super().complete(prompt_ids, sampling, cancel, progress, decoder)
        stop_at, self.stop_at = self.stop_at, None
        if stop_at is not None:
            ids = completion.ids

            def stopped_while_written():
                for count, token in enumerate(ids(), 1):
                    yield token
                    if count == stop_at:
                        cancel.cancel()

            completion.ids = stopped_while_written
        return completion


@pytest.fixture()
def nemo_api(home, tiny_nemo_gguf):
    with Services(Settings(model=str(tiny_nemo_gguf), n_ctx=1024)) as services:
        services.ensure_model()
        server = ApiServer(services, port=free_port()).start()
        try:
            yield openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        finally:
            server.stop()


def test_a_named_tool_choice_gets_a_valid_call_from_the_real_engine(nemo_api):
    reply = nemo_api.chat.completions.create(
        model="tiny-nemo", messages=ASK, tools=[WEATHER, CLOCK], max_tokens=200, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    [choice] = reply.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and CALL_ID.fullmatch(call.id)
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("celsius", "fahrenheit")
    assert isinstance(arguments["city"], str) and len(arguments["city"]) <= 24

    free = nemo_api.chat.completions.create(model="tiny-nemo", messages=ASK, tools=[WEATHER, CLOCK],
                                            max_tokens=8, temperature=0)
    assert free.choices[0].message.tool_calls is None and free.choices[0].finish_reason == "length", \
        "auto stays free: the random model writes text, no grammar holds it"


def test_a_required_tool_choice_streams_calls_of_offered_tools(nemo_api):
    stream = nemo_api.chat.completions.create(model="tiny-nemo", messages=ASK, tools=[WEATHER, CLOCK],
                                              tool_choice="required", max_tokens=300, temperature=0, stream=True)
    chunks = list(stream)
    calls = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices]
    assert 1 <= len(calls) <= MAX_CALLS and chunks[-1].choices[0].finish_reason == "tool_calls"
    for call in calls:
        assert call.function.name in ("get_weather", "get_time") and CALL_ID.fullmatch(call.id)
        arguments = json.loads(call.function.arguments)
        assert set(arguments) == ({"city", "unit"} if call.function.name == "get_weather" else {"zone"})


def nemo_settings(gguf, **changes) -> Settings:
    return Settings(model=str(gguf), n_ctx=1024, max_tokens=120, temperature=0.0,
                    tools="search_conversations,current_datetime", tool_choice="search_conversations", **changes)


def test_the_tool_loop_runs_a_required_builtin_call_feeds_its_result_back_and_saves_the_step(tiny_nemo_gguf, tmp_path):
    engine, history = RecordingEngine(), History(tmp_path / "chat.db")
    service = ChatService(history, engine)
    settings = nemo_settings(tiny_nemo_gguf)
    final = list(service.send(None, "Find my pasta recipe", settings))[-1]
    assert final.status == "complete"
    user, step, *answer = history.messages(final.conversation_id)
    record = json.loads(step["content"])
    assert step["role"] == "tool" and record["name"] == "search_conversations" and record["round"] == 1
    assert CALL_ID.fullmatch(record["id"]) and record["error"] is None, record
    assert record["result"]["query"] == record["arguments"]["query"] and isinstance(record["result"]["hits"], list)

    tools = [t.schema() for t in service.enabled_tools(settings)]
    asked = [{"role": "user", "content": "Find my pasta recipe"}]
    assert engine.prompts[0] == encode_chat(engine.tekken(), asked, tools) + [tk.TOOL_CALLS], "the call is required"
    call = {"id": record["id"], "type": "function",
            "function": {"name": "search_conversations", "arguments": json.dumps(record["arguments"])}}
    fed_back = asked + [{"role": "assistant", "content": None, "tool_calls": [call]},
                        {"role": "tool", "tool_call_id": record["id"], "content": record["content"]}]
    assert engine.prompts[1] == encode_chat(engine.tekken(), fed_back, tools), "the result goes back to the model"
    assert [row["role"] for row in answer] in ([], ["assistant"])
    engine.unload()
    history.close()


def test_stop_while_the_real_engine_writes_a_call_saves_nothing_half_written(tiny_nemo_gguf, tmp_path):
    engine, history = RecordingEngine(stop_at=3), History(tmp_path / "chat.db")
    service = ChatService(history, engine)
    settings = nemo_settings(tiny_nemo_gguf)
    final = list(service.send(None, "Find my pasta recipe", settings, CancelToken()))[-1]
    assert final.status == "stopped"
    rows = history.messages(final.conversation_id)
    assert [row["role"] for row in rows] == ["user"], "no step and no half-written call is saved"

    again = list(service.send(final.conversation_id, "Try again", settings))[-1]
    roles = [row["role"] for row in history.messages(again.conversation_id)]
    assert again.status == "complete" and roles[:3] == ["user", "user", "tool"]
    tools = [t.schema() for t in service.enabled_tools(settings)]
    asked = [{"role": "user", "content": "Find my pasta recipe"}, {"role": "user", "content": "Try again"}]
    assert engine.prompts[1] == encode_chat(engine.tekken(), asked, tools) + [tk.TOOL_CALLS]
    engine.unload()
    history.close()


def test_a_required_call_shows_as_a_step_in_chromium(home, tiny_nemo_gguf, page, artifacts):
    from app.ui import build_app, launch
    from test_ui_browser import type_and_send

    save_settings(nemo_settings(tiny_nemo_gguf))
    demo, style = build_app()
    port = free_port()
    launch(demo, style, port=port, block=False)
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        type_and_send(page, "Find my pasta recipe")
        page.locator("#chatbot", has_text="Tool: search_conversations").wait_for(timeout=120_000)
        [conversation] = demo.nemo.history.conversations()
        roles = [m["role"] for m in demo.nemo.history.messages(conversation["id"])]
        assert roles[:2] == ["user", "tool"]
        page.screenshot(path=str(artifacts / "tool-step.png"))
    finally:
        demo.close()
