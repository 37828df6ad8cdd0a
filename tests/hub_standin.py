"""A stand-in of the Hugging Face Hub on 127.0.0.1 over real HTTP, serving one catalog file the way
hf_hub_download asks for it: HEAD/GET /{repo}/resolve/{revision}/{filename} with ETag,
X-Repo-Commit, Content-Length and Range. The `hub` fixture points huggingface_hub at it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port

from app.engine.catalog import CATALOG

MODEL = CATALOG["nemo-q4_k_m"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONTENT = os.urandom(3 * 2**20 + 12345)
SHA256 = hashlib.sha256(CONTENT).hexdigest()
PIECE = 256 * 1024


class Hub:
    """Serves one file. `drop_after`: close the connection once after that many body bytes;
    `corrupt`: flip a byte of the body (the ETag stays the right file's); `pace`: seconds to wait
    after each 256 KiB; `hold_at`: stop sending after that many body bytes until `release` is set
    (so a test can press Stop in the middle of a download without racing the clock)."""

    def __init__(self) -> None:
        self.drop_after: int | None = None
        self.corrupt = False
        self.etag = SHA256  # what the hub says the file is (a test may make it a path)
        self.pace = 0.0
        self.hold_at: int | None = None
        self.release = threading.Event()
        self.requests: list[tuple[str, str | None, str | None]] = []  # (method, Range, Authorization)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.requests.append(("HEAD", None, self.headers.get("Authorization")))
                self.respond(head=True)

            def do_GET(self):
                hub.requests.append(("GET", self.headers.get("Range"), self.headers.get("Authorization")))
                self.respond(head=False)

            def respond(self, head: bool):
                if self.path != f"/{MODEL.repo}/resolve/main/{MODEL.filename}":
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                body = bytearray(CONTENT[start:])
                if hub.corrupt:
                    body[len(body) // 2] ^= 0xFF
                self.send_response(206 if start else 200)
                self.send_header("ETag", f'"{hub.etag}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
                self.end_headers()
                if head:
                    return
                if hub.drop_after is not None:
                    self.wfile.write(body[: hub.drop_after])
                    self.wfile.flush()
                    hub.drop_after = None
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                for start in range(0, len(body), PIECE):
                    if hub.hold_at is not None and start >= hub.hold_at:
                        self.wfile.flush()
                        hub.release.wait(120)
                        hub.hold_at = None
                    self.wfile.write(body[start : start + PIECE])
                    time.sleep(hub.pace)

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """The stand-in hub, and huggingface_hub pointed at it (in this process) with a fresh cache."""
    from huggingface_hub import constants

    server = Hub()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.server.shutdown()
    server.server.server_close()
