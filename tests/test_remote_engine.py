"""The remote engine against real OpenAI-compatible servers: llama-cpp-python's own
(`python -m llama_cpp.server`) with SmolLM2, started here on 127.0.0.1, and nemo-chat's own API
server (which takes token ids, as vLLM does). Chat, summarize and translate through it; Stop
closes the stream; refused connections, a wrong key, an unknown model, a server killed or frozen
mid-reply are one line each and lose nothing; 429/503 are retried, nothing else; a NeMo model gets
its exact Tekken ids where the server takes them, and falls back to /v1/chat/completions, saying so
once, where it does not; the Settings tab switches the app to a server. JSON mode and the repeat
penalty reach the server, also from an API client of nemo-chat's own API served on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from app.base.config import Settings
from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.base.messages import Message
from app.engine.chat_format import ServerChatFormat, chat_format_for
from app.engine.openai_http import MAX_RETRY_AFTER_S, RETRY_DELAYS_S, RETRY_STATUSES, check_base_url, retry_delay
from app.engine.prompt_ids import PromptIds
from app.engine.remote import RemoteEngine, json_mode
from app.history import COMPLETE, FAILED, STOPPED
from app.runtime import LoadOptions, SamplingOptions
from app.services.root import Services
from conftest import free_port, run_cli
from corpora import long_markdown

KEY = "test-key-3f9a1c"
LONG_ASK = "Write a very long story about a dragon who learns to bake bread, with many chapters."
JSON_ASK = "Name the capital of France."


class LlamaServer:
    """`python -m llama_cpp.server` in a child process; its output goes to `log`."""

    def __init__(self, model: Path, log: Path, key: str | None = KEY, n_ctx: int = 2048) -> None:
        self.port, self.log = free_port(), log
        args = [sys.executable, "-u", "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                "--port", str(self.port), "--n_ctx", str(n_ctx), "--interrupt_requests", "False"]
        if key:
            args += ["--api_key", key]
        self.process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.url, self.model = f"http://127.0.0.1:{self.port}/v1", str(model)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{self.url}/models", headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the server did not start: {log.read_text()[-2000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(10)


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    server = LlamaServer(model_path, tmp_path_factory.mktemp("llama-server") / "server.log")
    yield server
    server.stop()


@pytest.fixture()
def spare_server(model_path, tmp_path):
    """A server of this test's own, to kill or freeze."""
    server = LlamaServer(model_path, tmp_path / "spare.log", key=None)
    yield server
    server.stop()


def remote_settings(server: LlamaServer, **changes) -> Settings:
    base = Settings(remote=server.url, remote_key=KEY, remote_model=server.model, n_ctx=2048, max_tokens=40,
                    temperature=0.0, tools="")
    return replace(base, **changes)


def chat_once(services: Services, text: str, cancel: CancelToken | None = None, stop_after: int = 0):
    """Send `text` in a new conversation; with `stop_after`, press Stop after that many updates."""
    updates = []
    for update in services.chat.send(None, text, services.settings, cancel):
        updates.append(update)
        if stop_after and len(updates) == stop_after:
            cancel.cancel()
    return updates


def test_chat_streams_through_the_server_as_the_openai_client_gets_it(home, server):
    from openai import OpenAI

    with Services(remote_settings(server)) as services:
        services.ensure_model()
        assert isinstance(services.engine, RemoteEngine) and services.engine.model_name == server.model
        assert isinstance(chat_format_for(services.engine), ServerChatFormat)  # SmolLM2: the server's template
        updates = chat_once(services, "What is the capital of France?")
        final = updates[-1]
        assert len(updates) > 3, "the reply streams in pieces"
        assert final.done and final.status == COMPLETE
        stats = final.stats
        assert stats.completion_tokens > 5 and stats.prompt_tokens > 5 and stats.ttft_s > 0 and stats.tokens_per_s > 0
        assert stats.stop_reason in ("eos", "length")
        saved = services.history.messages(final.conversation_id)
        assert [m["role"] for m in saved] == ["user", "assistant"]
        assert saved[1]["content"] == final.text and saved[1]["model"] == server.model
        assert saved[1]["completion_tokens"] == stats.completion_tokens
    reference = OpenAI(base_url=server.url, api_key=KEY).chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=40, temperature=0.0, top_p=0.95, extra_body={"repeat_penalty": 1.0})  # the server's own: 1.1
    assert final.text == reference.choices[0].message.content  # the same request the official client makes
    assert stats.completion_tokens == reference.usage.completion_tokens  # counted chunks = the server's tokens


def test_cli_chat_with_the_server_from_flags_and_environment(home, server, monkeypatch):
    monkeypatch.setenv("NEMO_CHAT_REMOTE", server.url)
    monkeypatch.setenv("NEMO_CHAT_REMOTE_KEY", KEY)
    done = run_cli("chat", "Say hello to Ada.", "--remote-model", server.model, "--max-tokens", "16",
                   "--ctx", "2048", "--temperature", "0", "--json", home=home, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["text"].strip() and answer["status"] == "complete" and answer["completion_tokens"] > 0
    assert answer["prompt_tokens"] > 0 and answer["tokens_per_s"] > 0

    monkeypatch.delenv("NEMO_CHAT_REMOTE_KEY")
    refused = run_cli("chat", "Hello", "--remote", server.url, "--remote-key", "wrong", "--ctx", "2048",
                      home=home, timeout=120)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "refused the key (401" in refused.stderr, refused.stderr


def loaded_engine(server: LlamaServer) -> RemoteEngine:
    engine = RemoteEngine(server.url, KEY)
    engine.load(LoadOptions(server.model, n_ctx=2048))
    return engine


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def test_json_mode_reaches_the_server_on_both_routes(home, server):
    """SmolLM2 answers this in prose; asked for JSON (an API client's response_format), the
    server's grammar allows nothing else."""
    engine = loaded_engine(server)
    prompt = chat_format_for(engine).encode([{"role": "user", "content": JSON_ASK}])
    prose = engine.complete(prompt, SamplingOptions(temperature=0.0, max_tokens=60)).text()
    reply = engine.complete(prompt, SamplingOptions(temperature=0.0, max_tokens=60, grammar="json")).text()
    assert prose.strip() and not is_json(prose), prose
    assert isinstance(json.loads(reply), dict), reply
    route, body = engine.request(prompt, SamplingOptions(grammar="json"), 60)
    assert route == "chat/completions" and "grammar" not in body  # llama.cpp's server refuses both there
    # /v1/completions (where ids go): llama-cpp-python's reads the grammar and ignores response_format
    headers = {"Authorization": f"Bearer {KEY}"}
    ask = {"prompt": "The capital of France is", "max_tokens": 60, "temperature": 0.0}
    plain = httpx.post(f"{server.url}/completions", headers=headers, json=ask, timeout=120).json()
    shaped = httpx.post(f"{server.url}/completions", headers=headers, json={**ask, **json_mode("completions")},
                        timeout=120).json()
    assert not is_json(plain["choices"][0]["text"]) and is_json(shaped["choices"][0]["text"])


def test_the_repeat_penalty_reaches_the_server(home, server):
    from openai import OpenAI

    engine = loaded_engine(server)
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = chat_format_for(engine).encode(ask)
    def greedy(penalty: float) -> str:
        return engine.complete(prompt, SamplingOptions(temperature=0.0, max_tokens=24, repeat_penalty=penalty)).text()

    penalized = greedy(1.5)
    assert penalized != greedy(1.0), "the penalty changed the greedy reply"
    reference = OpenAI(base_url=server.url, api_key=KEY).chat.completions.create(
        model=server.model, messages=ask, max_tokens=24, temperature=0.0, extra_body={"repeat_penalty": 1.5})
    assert penalized == reference.choices[0].message.content


def test_an_api_client_gets_json_from_nemo_chat_served_on_a_server(home, server):
    """`nemo-chat serve --remote`: nemo-chat's own API on the remote engine streams a template
    model's text as the server sends it, and keeps JSON mode."""
    from openai import OpenAI

    from app.faces.api_server import ApiServer

    with Services(remote_settings(server)) as services:
        services.ensure_model()
        api = ApiServer(services, port=free_port()).start()
        try:
            client = OpenAI(base_url=api.url, api_key="unused", max_retries=0, timeout=120)
            ask = dict(model=server.model, messages=[{"role": "user", "content": JSON_ASK}], max_tokens=60,
                       temperature=0.0)
            prose = client.chat.completions.create(**ask).choices[0].message.content
            reply = client.chat.completions.create(**ask, response_format={"type": "json_object"})
        finally:
            api.stop()
    assert prose.strip() and not is_json(prose), prose
    assert isinstance(json.loads(reply.choices[0].message.content), dict), reply.choices[0].message.content


def test_summarize_and_translate_a_document_through_the_server(home, server, monkeypatch, tmp_path):
    monkeypatch.setenv("NEMO_CHAT_REMOTE_KEY", KEY)
    doc = tmp_path / "mill.md"
    doc.write_text("# The old mill\n\nThe mill on the river Arden was built in 1820 by the Harlow family. "
                   "It ground wheat for the whole valley until 1954, when a flood broke its wheel. "
                   "In 2010 volunteers repaired it, and it now grinds flour for the village bakery.\n",
                   encoding="utf-8")
    common = ["--remote", server.url, "--remote-model", server.model, "--ctx", "2048", "--temperature", "0"]
    summary = run_cli("summarize", str(doc), "--length", "short", "--json", *common, home=home, timeout=240)
    assert summary.returncode == 0, summary.stderr
    result = json.loads(summary.stdout)
    assert result["summary"].strip() and result["levels"] == 1 and result["engine_calls"] == 1

    translation = run_cli("translate", "--text", "Good morning. The bakery opens at seven.", "--to", "fr",
                          "--from", "en", "--max-tokens", "60", "--json", *common, home=home, timeout=240)
    assert translation.returncode == 0, translation.stderr
    result = json.loads(translation.stdout)
    assert result["translation"].strip() and result["target_language"] == "fr" and result["engine_calls"] >= 1


def test_a_summary_asks_the_server_to_tokenize_each_text_once(home, server, tmp_path):
    """Counted in the server's own access log: every stored piece, every prompt and every partial
    summary is tokenized at most once (the summary counts pieces when it plans, packs and reads them)."""
    from app.documents.reading import read_document
    from app.services.summarize import SummaryOptions

    doc = tmp_path / "chronicle.md"
    doc.write_text(long_markdown(1500), encoding="utf-8")
    with Services(remote_settings(server, n_ctx=768)) as services:
        services.ensure_model()
        before = server.output().count("POST /extras/tokenize")
        document_id, _ = services.documents.add(read_document(doc))
        result = list(services.summarize(document_id, SummaryOptions("short")))[-1].result
        asked = server.output().count("POST /extras/tokenize") - before
        pieces = len(services.documents.chunks(document_id))
    assert result.text.strip() and result.chunks >= 4, result.chunks
    # once each: the stored pieces, each call's prompt, each partial summary, and the instructions of
    # each of the 3 kinds of call (measured when planning); without the cache each piece alone is 3 requests
    assert asked <= pieces + 2 * result.engine_calls - 1 + 3, (asked, pieces, result.engine_calls)


def test_engine_options_on_every_command_and_their_environment(home, monkeypatch, capsys):
    from app.faces.cli import build_parser, main
    from app.faces.cli_options import engine_overrides

    monkeypatch.setenv("NEMO_CHAT_REMOTE", "http://env:8000/v1")
    monkeypatch.setenv("NEMO_CHAT_REMOTE_MODEL", "from-env")
    for command in (["ui"], ["chat", "hi"], ["summarize", "a.pdf"], ["translate", "--text", "x", "--to", "fr"]):
        args = build_parser().parse_args([*command, "--remote-key", "k", "--parallel", "4"])
        assert engine_overrides(args) == {"remote": "http://env:8000/v1", "remote_key": "k",
                                           "remote_model": "from-env", "parallel": 4}
    assert build_parser().parse_args(["chat", "hi", "--remote", "http://flag:1/v1"]).remote == "http://flag:1/v1"
    assert main(["chat", "hi", "--parallel", "-2"]) == 2
    assert main(["chat", "hi", "--remote", "http://127.0.0.1:9"]) == 2  # no /v1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "--parallel" in errors[0] and "ending in /v1" in errors[1]
    assert not home.exists() or not any(home.iterdir()), "a bad URL is refused before anything is written"


def test_stop_closes_the_stream_and_the_server_stops_at_once(home, server):
    with Services(remote_settings(server, max_tokens=1500, temperature=0.7)) as services:
        services.ensure_model()
        before = server.output().count("Disconnected from client")
        cancel = CancelToken()
        updates = chat_once(services, LONG_ASK, cancel, stop_after=4)
        final = updates[-1]
        assert final.status == STOPPED and final.stats.stop_reason == "cancelled"
        assert final.text and final.stats.completion_tokens < 40, "the reply ended right after Stop"
        saved = services.history.messages(final.conversation_id)[-1]
        assert saved["status"] == STOPPED and saved["content"] == final.text
        deadline = time.monotonic() + 60  # an event, not a speed: generous on a loaded machine
        while server.output().count("Disconnected from client") == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.output().count("Disconnected from client") == before + 1, "the server saw the client leave"
        # the server serves one request at a time: this one is answered only because the first one ended
        again = chat_once(replace_settings(services, max_tokens=8), "Hi")[-1]
        assert again.status == COMPLETE and again.stats.completion_tokens > 0


def replace_settings(services: Services, **changes) -> Services:
    services.settings = replace(services.settings, **changes)
    return services


def test_stop_while_the_server_is_silent_closes_the_connection(home, server):
    """Stop before the first token (the server busy with another request) returns at once."""
    with Services(remote_settings(server)) as services:
        services.ensure_model()
        blocker = httpx.Client(timeout=60)
        with blocker.stream("POST", f"{server.url}/completions", headers={"Authorization": f"Bearer {KEY}"},
                            json={"prompt": LONG_ASK, "max_tokens": 1800, "stream": True,
                                  "logit_bias": {"0": -100, "2": -100}}) as busy:  # SmolLM2's end tokens banned
            lines = busy.iter_lines()
            for _ in range(6):  # the server is now generating for another client (for many seconds)
                next(lines)
            cancel = CancelToken()
            stream = services.engine.complete(PromptIds([1, 2, 3], [{"role": "user", "content": "Hi"}]),
                                              SamplingOptions(max_tokens=8), cancel)
            threading.Timer(0.5, cancel.cancel).start()
            assert list(stream) == [] and stream.stats.stop_reason == "cancelled"
            still = next(lines)
            assert still.startswith("data: {"), "Stop closed the silent stream while the server still wrote the other reply"
        blocker.close()


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_refused_connection_is_one_line_and_writes_nothing(home):
    settings = Settings(remote=f"http://127.0.0.1:{free_port()}/v1", n_ctx=2048, tools="")
    with Services(settings) as services:
        with pytest.raises(UserError) as refused:
            list(services.chat.send(None, "Hello?", settings))
        assert "cannot reach http://127.0.0.1" in one_line(refused)
        assert services.history.conversations() == []


def test_a_wrong_key_and_an_unknown_model_are_one_line_each(home, server):
    with Services(remote_settings(server, remote_key="not-the-key")) as services:
        with pytest.raises(UserError) as wrong_key:
            services.ensure_model()
        assert "refused the key (401 Unauthorized)" in one_line(wrong_key)
    with Services(remote_settings(server, remote_model="no-such-model")) as services:
        with pytest.raises(UserError) as unknown:
            list(services.chat.send(None, "Hello?", services.settings))
        assert "serves no model named 'no-such-model' (it serves: " in one_line(unknown)
        assert services.history.conversations() == []
    with pytest.raises(UserError) as bad_url:
        check_base_url("http://127.0.0.1:8000")
    assert "ending in /v1" in one_line(bad_url)


def test_a_server_killed_mid_reply_is_one_line_and_the_partial_reply_is_kept(home, spare_server):
    settings = remote_settings(spare_server, remote_key="", max_tokens=1500, temperature=0.7)
    with Services(settings) as services:
        updates = []
        with pytest.raises(UserError) as gone:
            for update in services.chat.send(None, LONG_ASK, settings):
                updates.append(update)
                if len(updates) == 5:
                    spare_server.process.kill()
        assert "went away in the middle of the reply" in one_line(gone)
        conversation = services.history.conversations()[0]["id"]
        user, reply = services.history.messages(conversation)
        assert user["content"] == LONG_ASK
        assert reply["status"] == FAILED and reply["content"].startswith(updates[-1].text) and updates[-1].text


def test_a_server_that_stops_answering_times_out_in_one_line_keeping_the_reply(home, spare_server):
    httpx.post(f"{spare_server.url}/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=120)  # warm
    engine = RemoteEngine(spare_server.url, read_timeout_s=10)  # generous: the machine is shared
    settings = remote_settings(spare_server, remote_key="", max_tokens=1500, temperature=0.7)
    with Services(settings, engine=engine) as services:
        updates = []
        with pytest.raises(UserError) as timed_out:
            for update in services.chat.send(None, LONG_ASK, settings):
                updates.append(update)
                if len(updates) == 5:
                    os.kill(spare_server.process.pid, signal.SIGSTOP)  # frozen: the connection stays open
        assert "did not answer in time" in one_line(timed_out)
        conversation = services.history.conversations()[0]["id"]
        user, reply = services.history.messages(conversation)
        assert user["content"] == LONG_ASK
        assert reply["status"] == FAILED and reply["content"].startswith(updates[-1].text) and updates[-1].text


def test_retries_wait_on_429_and_503_only_and_honour_retry_after():
    """llama-cpp-python's server never answers 429 or 503 (it queues every request), so the
    backoff policy is checked on its own here."""
    assert RETRY_STATUSES == {429, 503}
    delays = [retry_delay(attempt) for attempt in range(len(RETRY_DELAYS_S) + 1)]
    assert delays[:-1] == list(RETRY_DELAYS_S) and delays[-1] is None
    assert all(a < b for a, b in zip(delays[:-2], delays[1:-1])), "backoff grows"
    assert retry_delay(0, "3") == 3.0 and retry_delay(1, "9999") == MAX_RETRY_AFTER_S
    assert retry_delay(0, "Wed, 21 Oct 2015 07:28:00 GMT") == RETRY_DELAYS_S[0]  # a date: our own delay
    assert retry_delay(len(RETRY_DELAYS_S), "1") is None


def test_the_client_retries_429_and_503_and_nothing_else_over_real_http():
    """A small stdlib HTTP server answers with the statuses in `script`, in order."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from app.engine.openai_http import ServerClient

    script, seen = [], []

    class Scripted(BaseHTTPRequestHandler):
        def do_GET(self):
            status = script.pop(0)
            seen.append(status)
            body = b'{"data": [{"id": "m"}]}' if status == 200 else b'{"error": {"message": "busy, try later"}}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client = ServerClient(f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    try:
        script[:] = [429, 503, 200]
        assert client.get("models") == {"data": [{"id": "m"}]} and seen == [429, 503, 200]
        seen.clear()
        script[:] = [500, 200]
        with pytest.raises(UserError) as failed:
            client.get("models")
        assert seen == [500] and "failed (500 Internal Server Error): busy, try later" in one_line(failed)
        seen.clear()
        script[:] = [429] * (len(RETRY_DELAYS_S) + 1)
        with pytest.raises(UserError) as busy:
            client.get("models")
        assert len(seen) == len(RETRY_DELAYS_S) + 1 and "is busy: too many requests (429)" in one_line(busy)
    finally:
        httpd.shutdown()
        client.close()


@pytest.fixture(scope="module")
def tiny_nemo_gguf(tmp_path_factory):
    """A tiny random-weight NeMo (real Tekken vocabulary) in GGUF."""
    from app.convert_gguf import convert
    from tiny_nemo import make_weights, write_native

    root = tmp_path_factory.mktemp("tiny-nemo-remote")
    return convert(write_native(root / "native", make_weights()), root / "tiny-nemo.gguf", "f16").path


@pytest.fixture(scope="module")
def tiny_nemo_server(tiny_nemo_gguf):
    """The tiny NeMo on llama-cpp-python's server."""
    server = LlamaServer(tiny_nemo_gguf, tiny_nemo_gguf.parent / "server.log", key=None, n_ctx=512)
    yield server
    server.stop()


def test_a_nemo_model_on_a_server_that_refuses_ids_falls_back_to_chat_and_says_so_once(home, tiny_nemo_server):
    from app.base.logs import log_path
    from app.nemo.prompt import encode_chat

    engine = RemoteEngine(tiny_nemo_server.url)
    engine.load(LoadOptions("", n_ctx=512))
    assert engine.tekken() is not None, "the server's tokenizer agrees with Tekken: a NeMo model"
    assert not engine.takes_prompt_ids and engine.notices == (Message("remote_no_prompt_ids", url=engine.url),)
    assert "takes no token ids" in str(engine.notices[0])
    assert log_path().read_text().count("takes no token ids") == 1
    chat_format = chat_format_for(engine)
    messages = [{"role": "user", "content": "Bonjour [INST] </s>"}]
    prompt = chat_format.encode(messages)
    assert prompt == encode_chat(engine.tekken(), messages) and prompt.messages == messages  # counted as NeMo's
    completion = engine.complete(prompt, SamplingOptions(temperature=0.0, max_tokens=6))
    completion.text()
    assert completion.stats.stop_reason in ("eos", "length") and completion.stats.prompt_tokens == len(prompt)
    with pytest.raises(UserError) as no_messages:
        engine.complete(list(prompt), SamplingOptions(max_tokens=4)).text()
    assert "takes no token ids" in one_line(no_messages)
    engine.load(LoadOptions("", n_ctx=512))  # loaded already: nothing is probed or said again
    assert log_path().read_text().count("takes no token ids") == 1


def test_settings_switch_the_app_to_the_server_and_chat_runs_there(served, page, server, artifacts):
    demo, url = served
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    page.get_by_text("Engine: on this machine or a server").click()
    page.get_by_label("On a server (OpenAI-compatible)").check()
    page.locator("#engine-url textarea, #engine-url input").first.click()
    page.keyboard.type(server.url)
    page.locator("#engine-key input").click()
    page.keyboard.type("wrong-key")
    page.locator("#engine-test").click()
    page.locator("#engine-status", has_text="refused the key (401").wait_for(timeout=30_000)
    page.locator("#engine-key input").fill("")
    page.locator("#engine-key input").click()
    page.keyboard.type(KEY)
    page.locator("#engine-test").click()
    page.locator("#engine-status", has_text="serves 1 model").wait_for(timeout=30_000)
    assert server.model in page.locator("#engine-status").inner_text()
    page.locator("#engine-use").click()
    page.locator("#engine-status", has_text="runs on a server").wait_for(timeout=30_000)
    page.locator("#engine-status").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ui-settings-engine-server.png"), full_page=True)
    services = demo.nemo
    assert isinstance(services.engine, RemoteEngine) and services.settings.remote == server.url

    page.get_by_role("tab", name="Chat").click()
    page.locator("#message-box textarea").click()
    page.keyboard.type("Name three colours.")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#chatbot .message.bot').length == 1"
                           " && document.querySelector('#reply-stats').innerText.includes('tok/s')", timeout=90_000)
    [conversation] = services.history.conversations()
    reply = services.history.messages(conversation["id"])[-1]
    assert reply["model"] == server.model and reply["content"].strip()  # the server's name for it, not the file's


def test_a_nemo_model_on_a_server_that_takes_ids_gets_the_exact_tekken_prompt(home, tiny_nemo_gguf):
    """nemo-chat's own OpenAI server (`nemo-chat serve`) takes prompt ids, as vLLM and llama-server do."""
    from app.engine.chat_format import NemoChatFormat
    from app.faces.api_server import ApiServer
    from app.nemo.prompt import encode_chat

    with Services(Settings(model=str(tiny_nemo_gguf), n_ctx=512, temperature=0.0)) as served:
        served.ensure_model()
        api = ApiServer(served, port=free_port()).start()
        try:
            settings = Settings(remote=api.url, n_ctx=512, max_tokens=6, temperature=0.0, tools="")
            with Services(settings) as services:
                services.ensure_model()
                engine = services.engine
                assert engine.tekken() is not None and engine.takes_prompt_ids and not engine.notices
                assert isinstance(chat_format_for(engine), NemoChatFormat)
                final = list(services.chat.send(None, "Bonjour [INST] </s>", settings))[-1]
                expected = encode_chat(engine.tekken(), [{"role": "user", "content": "Bonjour [INST] </s>"}])
                assert final.status == COMPLETE and final.stats.stop_reason in ("eos", "length")
                assert final.stats.prompt_tokens == len(expected) and final.stats.completion_tokens > 0
            direct = httpx.post(f"{api.url}/completions", timeout=120, json={
                "prompt": expected, "max_tokens": 6, "temperature": 0.0}).json()  # the same ids, sent by hand
            assert direct["usage"]["prompt_tokens"] == len(expected)
            assert final.text == direct["choices"][0]["text"], "the chat sent exactly these ids"
        finally:
            api.stop()
