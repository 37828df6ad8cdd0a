"""Smaller holes, each closed and proven on real servers: a token id the model does not have, a
remote server that sends too much, a key sent in clear to another machine."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
from conftest import free_port

from app.base.config import Settings
from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.base.messages import Message
from app.engine.openai_http import MAX_BODY_BYTES, MAX_LINE_BYTES, ServerClient, capped_lines, key_in_clear
from app.faces.api_server import ApiServer
from app.services.root import Services

KEY = "k" * 24


def post(url: str, path: str, body: dict) -> http.client.HTTPResponse:
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return connection.getresponse()


@pytest.fixture()
def two_sequences(home):
    """The API on the embedded engine with two sequences: requests share one batch."""
    with Services(Settings(model="smollm2", n_ctx=1024, parallel=2, temperature=0.0)) as services:
        services.ensure_model()
        server = ApiServer(services, port=free_port()).start()
        yield services, server
        server.stop()


def test_a_token_id_out_of_range_gets_400_and_its_neighbour_goes_on(two_sequences):
    services, server = two_sequences
    n_vocab = services.engine.llm.n_vocab()
    neighbour = post(server.url, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 24,
                                                     "temperature": 0, "stream": True})
    assert neighbour.status == 200
    first = neighbour.readline()
    while not first.startswith(b"data:"):
        first = neighbour.readline()  # the neighbour is running: its first token came
    for ids, stream in (([1, n_vocab], False), ([1, n_vocab + 10**9], True), ([1, -3], False)):
        refused = post(server.url, "/v1/completions", {"prompt": ids, "max_tokens": 4, "stream": stream})
        error = json.loads(refused.read())["error"]
        assert refused.status == 400 and "out of range" in error["message"], (ids, error)
        assert error["type"] == "invalid_request_error"
    events = [e for e in [first, *neighbour.read().splitlines()] if e.strip()]
    chunks = [json.loads(e[5:]) for e in events if e.startswith(b"data:") and e.strip() != b"data: [DONE]"]
    assert events[-1].strip() == b"data: [DONE]" and not [c for c in chunks if "error" in c], chunks
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    with pytest.raises(UserError, match=f"token id {n_vocab} is out of range"):
        services.engine.complete([1, n_vocab])
    fine = post(server.url, "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2})
    assert fine.status == 200 and json.loads(fine.read())["usage"]["prompt_tokens"] == 3


class Flood(BaseHTTPRequestHandler):
    """A server that sends too much: a model list over the body cap, an event over the line cap."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": [{"id": "' + b"m" * (MAX_BODY_BYTES + 2**20) + b'"}]}')

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b'data: {"choices": []}\n\ndata: {"x": "' + b"y" * (MAX_LINE_BYTES + 4096))
        self.wfile.flush()
        self.server.sent.set()
        self.server.done.wait(30)  # the line goes on: the client must stop reading by itself

    def log_message(self, *args):
        pass


def test_a_remote_server_that_sends_too_much_is_cut_off():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    server.sent, server.done = threading.Event(), threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ServerClient(f"http://127.0.0.1:{server.server_address[1]}/v1")
    try:
        with pytest.raises(UserError, match="an answer of over 32 MiB"):
            client.get("models")
        events = client.stream("completions", {"prompt": "x"}, CancelToken())
        assert next(events) == {"choices": []}
        with pytest.raises(UserError, match="a line of over 1,048,576 bytes in its event stream"):
            next(events)
        assert server.sent.is_set()
    finally:
        server.done.set()
        client.close()
        server.shutdown()
        server.server_close()


def test_capped_lines():
    assert list(capped_lines([b"a\r\nb", b"c\n\nd"])) == ["a", "bc", "", "d"]
    assert list(capped_lines([b"x" * 10, b"\n"], limit=10)) == ["x" * 10]
    with pytest.raises(ValueError):
        list(capped_lines([b"x" * 6, b"x" * 6], limit=10))


def this_machines_address() -> str:
    """An address of this machine that is not loopback (the route out)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return probe.getsockname()[0]


def test_a_key_sent_in_clear_to_another_machine_is_warned_of_once(home):
    from app.base.logs import log_path
    from app.engine.remote import RemoteEngine
    from app.runtime import LoadOptions

    address = this_machines_address()
    with Services(Settings(model="smollm2", n_ctx=512)) as served:
        served.ensure_model()
        api = ApiServer(served, host="0.0.0.0", port=free_port(), api_key=KEY).start()
        port = urlparse(api.url).port
        try:
            engine = RemoteEngine(f"http://{address}:{port}/v1", KEY)
            engine.load(LoadOptions("", n_ctx=512))
            engine.load(LoadOptions("", n_ctx=512))  # loaded already: said once
            assert [notice.key for notice in engine.notices] == ["remote_key_in_clear"]
            assert f"the API key travels unencrypted to {address}" in str(engine.notices[0])
            assert log_path().read_text().count("travels unencrypted") == 1
            on_this_machine = RemoteEngine(f"http://127.0.0.1:{port}/v1", KEY)
            on_this_machine.load(LoadOptions("", n_ctx=512))
            assert on_this_machine.notices == ()
            assert log_path().read_text().count("travels unencrypted") == 1
        finally:
            api.stop()
    assert key_in_clear("https://10.0.0.5/v1", KEY) is None and key_in_clear("http://localhost:8000/v1", KEY) is None
    assert key_in_clear("http://[::1]:8000/v1", KEY) is None
    assert key_in_clear("http://gpu.example/v1", KEY) == Message("remote_key_in_clear", url="http://gpu.example/v1",
                                                               host="gpu.example")
    assert key_in_clear("http://gpu.example/v1", "") is None
