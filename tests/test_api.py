"""The OpenAI-compatible API, served for real on 127.0.0.1 and called with the official `openai` client."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time

import anthropic
import openai
import pytest

from app.base.config import Settings
from app.base.errors import UserError
from app.engine.chat_format import chat_format_for
from app.faces.api_server import ApiServer
from app.services.openai_api import StopFinder
from app.services.root import Services
from conftest import free_port

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture()
def services(home):
    with Services(Settings(model="smollm2", n_ctx=2048, temperature=0.0)) as services:
        services.ensure_model()
        yield services


@pytest.fixture()
def api(services):
    server = ApiServer(services, port=free_port()).start()
    yield server, openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
    server.stop()


def health(server) -> dict:
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/health")
    return json.loads(connection.getresponse().read())


def test_models_and_a_streamed_reply_agree_with_a_whole_one(api, services):
    server, client = api
    [model] = [m.id for m in client.models.list().data if m.id == services.engine.model_name]
    whole = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=40)
    pieces, usage = [], None
    for chunk in client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=40,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    text = whole.choices[0].message.content
    assert text and "".join(pieces) == text
    assert whole.usage.completion_tokens == usage.completion_tokens > 0
    prompt = chat_format_for(services.engine).encode(QUESTION)
    assert whole.usage.prompt_tokens == usage.prompt_tokens == len(prompt)
    assert usage.prompt_tokens_details.cached_tokens > 0, "the second identical prompt reuses the KV cache"
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    assert services.history.conversations() == [], "API calls are not chats of the user's history"


def test_stop_strings_and_max_tokens_end_the_reply(api):
    _, client = api
    full = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=60)
    text = full.choices[0].message.content
    cut = text.strip().split()[1]  # the reply's second word
    stopped = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=60,
                                             stop=[cut])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(cut)]
    short = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_text_completions_take_text_or_token_ids(api, services):
    _, client = api
    by_text = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8,
                                        temperature=0)
    ids = services.engine.tokenize("The capital of France is")
    by_ids = client.completions.create(model="smollm2", prompt=ids, max_tokens=8, temperature=0)
    assert by_text.choices[0].text and by_text.choices[0].text == by_ids.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids)


def test_requests_that_cannot_be_served_get_openai_errors(api, services):
    _, client = api
    with pytest.raises(openai.NotFoundError, match="does not exist here"):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="n=1"):
        client.chat.completions.create(model="smollm2", messages=QUESTION, n=2)
    with pytest.raises(openai.BadRequestError, match="messages must be"):
        client.chat.completions.create(model="smollm2", messages=[])
    with pytest.raises(openai.APIStatusError) as too_long:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "word " * 3000}])
    assert too_long.value.status_code == 413 and "context" in str(too_long.value)
    with pytest.raises(openai.BadRequestError, match="tools need a Mistral NeMo model"):
        client.chat.completions.create(model="smollm2", messages=QUESTION, tools=[
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])


def test_four_clients_at_once_all_complete(api):
    _, client = api
    results = {}

    def ask(i):
        reply = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=24,
                                               messages=[{"role": "user", "content": f"Say a word about the number {i}."}])
        results[i] = reply.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert sorted(results) == [0, 1, 2, 3] and all(results.values())


def test_a_client_that_goes_away_frees_its_sequence(api):
    server, client = api
    stream = client.chat.completions.create(model="smollm2", stream=True, max_tokens=1500, temperature=0,
                                            messages=[{"role": "user", "content": "Count from 1 to 1000."}])
    for i, _ in enumerate(stream):
        if i == 5:
            break
    assert health(server)["requests_in_flight"] == 1
    stream.close()
    deadline = time.monotonic() + 10
    while health(server)["requests_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health(server)["requests_in_flight"] == 0, "the abandoned reply stopped"
    quick = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=2)
    assert quick.usage.completion_tokens == 2


def test_a_non_loopback_bind_needs_a_key_and_a_forged_host_is_refused(services):
    with pytest.raises(UserError, match="--api-key"):
        ApiServer(services, host="0.0.0.0", port=free_port())
    server = ApiServer(services, host="0.0.0.0", port=free_port(), api_key="k" * 20).start()
    try:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        anonymous = openai.OpenAI(base_url=url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
        keyed = openai.OpenAI(base_url=url, api_key="k" * 20, max_retries=0)
        assert keyed.models.list().data
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/v1/models", headers={"Host": f"evil.example:{port}",
                                                          "Authorization": "Bearer " + "k" * 20})
        assert connection.getresponse().status == 421
        assert health(server)["status"] == "ok", "the health check needs no key"
    finally:
        server.stop()


def test_api_chats_are_kept_only_when_asked(services):
    server = ApiServer(services, port=free_port(), keep_history=True).start()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=8)
    finally:
        server.stop()
    [conversation] = services.history.conversations()
    user, answer = services.history.messages(conversation["id"])
    assert user["content"] == QUESTION[0]["content"] and answer["content"] == reply.choices[0].message.content


def test_a_stop_string_split_across_pieces_is_held_back_and_never_sent():
    finder = StopFinder(("END",))
    assert finder.feed("Hello E") == "Hello " and finder.feed("N") == ""
    assert finder.feed("D and more") == "" and finder.stopped
    open_finder = StopFinder(("END",))
    assert open_finder.feed("Hello E") == "Hello " and open_finder.feed("x") == "Ex" and not open_finder.stopped


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_a_nemo_tool_call_round_trip_is_prompted_with_mistral_commons_exact_ids(home, tiny_nemo_gguf, oracle):
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    from app.nemo import tekken as tk

    conversation = [
        {"role": "system", "content": "Use tools when they help."},
        {"role": "user", "content": "Weather in Paris? [INST] </s>"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "abcDEF123", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "abcDEF123", "content": '{"celsius": 21}'},
        {"role": "assistant", "content": "It is 21 °C in Paris."},
        {"role": "user", "content": "And in Lyon?"},
    ]
    expected = oracle.encode_chat_completion(ChatCompletionRequest.from_openai(messages=conversation, tools=[WEATHER])).tokens
    with Services(Settings(model=str(tiny_nemo_gguf), n_ctx=512)) as services:
        services.ensure_model()
        server = ApiServer(services, port=free_port()).start()
        try:
            client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
            reply = client.chat.completions.create(model="tiny-nemo", messages=conversation, tools=[WEATHER],
                                                   max_tokens=4, temperature=0)
            assert reply.usage.prompt_tokens == len(expected)
            assert services.engine.llm._input_ids[: len(expected)].tolist() == expected  # what llama.cpp read
            forced = client.chat.completions.create(model="tiny-nemo", messages=conversation, tools=[WEATHER],
                                                    tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                                    max_tokens=4, temperature=0)
            evaluated = services.engine.llm._input_ids[: len(expected) + 1].tolist()
            assert evaluated == expected + [tk.TOOL_CALLS], "a named tool choice makes the reply start as a call"
            assert forced.choices[0].finish_reason == "length" and forced.usage.completion_tokens == 4, \
                "4 tokens cannot hold the call: cut by max_tokens (tests/test_tool_calls.py lets it finish)"
        finally:
            server.stop()


class ScriptedNemo:
    """Unit-test stand-in for the engine: NeMo's vocabulary, one scripted reply."""

    def __init__(self, reply_ids):
        from app.nemo.tekken import Tekken

        self._tekken, self.reply_ids, self.model_name, self.n_ctx = Tekken.default(), reply_ids, "scripted", 4096

    def tekken(self):
        return self._tekken

    def complete(self, prompt_ids, sampling, cancel=None, progress=None, decoder=None):
        from app.base.jobs import CancelToken
        from app.runtime import GenerationStats

        engine, cancel = self, cancel or CancelToken()

        class Scripted:
            stats = GenerationStats(prompt_tokens=len(prompt_ids), stop_reason="eos")

            def ids(self):
                """Like the real engine: no token once the cancel is set."""
                for token in engine.reply_ids:
                    if cancel.cancelled:
                        self.stats.stop_reason = "cancelled"
                        return
                    self.stats.completion_tokens += 1
                    yield token

        return Scripted()


def test_a_tool_call_reply_comes_back_as_openai_tool_calls_with_nemo_ids():
    from app.base.jobs import CancelToken
    from app.nemo import tekken as tk
    from app.nemo.tekken import Tekken
    from app.services.openai_api import OpenAIService, parse_request, reply_json

    call = [{"name": "get_weather", "arguments": {"city": "Lyon"}, "id": "xyzXYZ789"}]
    engine = ScriptedNemo([tk.TOOL_CALLS, *Tekken.default().encode(json.dumps(call))])
    service = OpenAIService(lambda: engine, lambda: ["scripted"])
    request = parse_request({"messages": [{"role": "user", "content": "Weather in Lyon?"}], "tools": [WEATHER]}, chat=True)
    deltas = list(service.run(request, CancelToken()))
    body = reply_json(request, deltas, True, "scripted")
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [tool_call] = choice["message"]["tool_calls"]
    assert tool_call == {"id": "xyzXYZ789", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}


def test_the_ui_serves_the_api_beside_the_page_on_one_engine(home, page):
    from app.base.config import save_settings
    from app.faces.api_server import api_app, api_service
    from app.ui import build_app, launch

    save_settings(Settings(model="smollm2", n_ctx=512, max_tokens=40, temperature=0.0))
    port = free_port()
    demo, style = build_app(api_url=f"http://127.0.0.1:{port}/v1")
    launch(demo, style, port=port, block=False, api=api_app(api_service(demo.nemo)))
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=8)
        assert reply.choices[0].message.content and demo.nemo.engine.loaded, "the API loaded the UI's engine"
        claude = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="unused", max_retries=0)
        message = claude.messages.create(model="smollm2", max_tokens=8, messages=QUESTION)
        assert message.content[0].text and message.usage.output_tokens > 0, "Anthropic's Messages are at /v1 too"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/v1/models", headers={"Host": f"evil.example:{port}"})
        assert connection.getresponse().status == 421, "the UI's Host guard covers /v1 too"
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_role("tab", name="Settings").click()
        page.locator("#api-section").click()
        page.locator("#api-state").wait_for(timeout=20_000)
        assert f"http://127.0.0.1:{port}/v1" in page.locator("#api-state").inner_text()
        python = page.locator("#api-python .cm-content").inner_text()
        curl = page.locator("#api-curl .cm-content").inner_text()
        assert '"smollm2"' in python and '"smollm2"' in curl
        ran = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0 and ran.stdout.strip(), f"Settings' Python example runs as shown: {ran.stderr}"
        ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0 and json.loads(ran.stdout)["choices"][0]["message"]["content"], ran.stdout
    finally:
        demo.close()


def test_nemo_chat_serve_runs_the_api_until_stopped(home, tmp_path):
    import os
    import signal

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--model", "smollm2", "--port", str(port),
                               "--ctx", "1024"], env={**os.environ, "NEMO_CHAT_HOME": str(home)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving the OpenAI API at" in server.stdout.readline()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        names = [m.id for m in client.models.list().data]
        assert names[0] == "smollm2" and not any("/" in name for name in names), names
        reply = client.completions.create(model="smollm2", prompt="One, two, three,", max_tokens=4, temperature=0)
        assert reply.usage.completion_tokens == 4
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    refused = subprocess.run([sys.executable, "-m", "app", "serve", "--host", "0.0.0.0", "--port", str(port)],
                             env={**os.environ, "NEMO_CHAT_HOME": str(home)}, capture_output=True, text=True)
    assert refused.returncode == 2 and "--api-key" in refused.stderr and "Traceback" not in refused.stderr


def test_json_mode_makes_the_reply_json(api):
    _, client = api
    reply = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=150,
                                           response_format={"type": "json_object"}, messages=[
        {"role": "user", "content": "Give the name and age of a fictional person as JSON."}])
    text = reply.choices[0].message.content
    assert text.lstrip()[:1] in ("{", "["), text  # JSON from its first character, never prose (nor empty)
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), (dict, list))
    else:  # cut by max_tokens: the start of JSON
        assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 150


def test_a_full_queue_answers_429_and_frees_up_when_a_reply_ends(services):
    server = ApiServer(services, port=free_port(), queue=0).start()  # one sequence, no one may wait
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
        stream = client.chat.completions.create(model="smollm2", stream=True, max_tokens=1500, temperature=0,
                                                messages=[{"role": "user", "content": "Count from 1 to 1000."}])
        next(iter(stream))
        with pytest.raises(openai.RateLimitError, match="queue is full"):
            client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=2)
        stream.close()
        deadline = time.monotonic() + 10
        while health(server)["requests_in_flight"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=2).choices
    finally:
        server.stop()
