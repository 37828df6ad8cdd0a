"""Downloads against a stand-in of the Hugging Face Hub served on 127.0.0.1 over real HTTP:
HEAD/GET /{repo}/resolve/{revision}/{filename} with ETag, X-Repo-Commit, Content-Length and Range."""

from __future__ import annotations

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port, run_cli

from app.errors import Cancelled, UserError
from app.jobs import CancelToken
from app.models import CATALOG, resolve_model

MODEL = CATALOG["nemo-q4_k_m"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONTENT = os.urandom(3 * 2**20 + 12345)
SHA256 = hashlib.sha256(CONTENT).hexdigest()


class Hub:
    """Serves one file. `drop_after`: close the connection once after that many body bytes;
    `corrupt`: flip a byte of the body (the ETag stays the right file's)."""

    def __init__(self) -> None:
        self.drop_after: int | None = None
        self.corrupt = False
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
                self.send_header("ETag", f'"{SHA256}"')
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
                self.wfile.write(body)

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


def partial_files(tmp_path):
    return list((tmp_path / "hf").rglob("*.incomplete"))


def test_download_reports_progress_and_lands_in_the_cache(hub, tmp_path, monkeypatch):
    from app.downloads import download

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    events = []
    path = download("nemo-q4_k_m", events.append)
    assert path.read_bytes() == CONTENT
    assert path.name == MODEL.filename and f"snapshots/{COMMIT}" in str(path)
    assert path.resolve().name == SHA256  # a blob of the Hugging Face cache, linked from the snapshot
    assert len(events) >= 12 and [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].done == events[-1].total == len(CONTENT)
    assert events[0].label == "downloading nemo-q4_k_m"
    assert {auth for _, _, auth in hub.requests} == {"Bearer hf_test_token"}
    assert resolve_model("nemo-q4_k_m") == path
    hub.requests.clear()
    assert download("nemo-q4_k_m") == path and hub.requests == []  # cached: no network


def test_a_dropped_connection_resumes_with_a_range_request(hub, tmp_path):
    from app.downloads import download

    hub.drop_after = 1_000_000
    path = download("nemo-q4_k_m")
    assert path.read_bytes() == CONTENT
    gets = [rng for method, rng, _ in hub.requests if method == "GET"]
    assert gets[0] is None and gets[1].startswith("bytes=") and int(gets[1][6:].rstrip("-")) > 0


def test_stop_keeps_the_partial_file_and_the_next_call_resumes(hub, tmp_path):
    from app.downloads import download

    cancel = CancelToken()

    def stop_at_half(progress):
        if progress.done > len(CONTENT) // 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        download("nemo-q4_k_m", stop_at_half, cancel)
    (partial,) = partial_files(tmp_path)
    kept = partial.stat().st_size
    assert len(CONTENT) // 2 < kept < len(CONTENT)
    with pytest.raises(UserError, match="not downloaded: run `nemo-chat models download nemo-q4_k_m`"):
        resolve_model("nemo-q4_k_m")
    hub.requests.clear()
    events = []
    path = download("nemo-q4_k_m", events.append)
    assert path.read_bytes() == CONTENT and partial_files(tmp_path) == []
    assert [rng for method, rng, _ in hub.requests if method == "GET"] == [f"bytes={kept}-"]
    assert events[0].label == "checking the partial download of nemo-q4_k_m"


def test_a_corrupted_file_is_detected_and_deleted(hub, tmp_path):
    from app.downloads import download

    hub.corrupt = True
    with pytest.raises(UserError, match="does not match the hub's checksum and was deleted"):
        download("nemo-q4_k_m")
    assert partial_files(tmp_path) == [] and not list((tmp_path / "hf").rglob(SHA256))
    hub.corrupt = False
    assert download("nemo-q4_k_m").read_bytes() == CONTENT


def test_offline_and_unreachable_hubs_say_what_to_do(hub, monkeypatch):
    from huggingface_hub import constants

    from app.downloads import download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"^offline \(HF_HUB_OFFLINE is set\) and nemo-q4_k_m is not downloaded: .*--model"):
        download("nemo-q4_k_m")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.server.shutdown()
    hub.server.server_close()
    with pytest.raises(UserError, match=r"^cannot reach the Hugging Face Hub at http://127\.0\.0\.1.*--model"):
        download("nemo-q4_k_m")
    with pytest.raises(UserError, match="unknown model 'nemo-q3'"):
        download("nemo-q3")


def test_cli_download_respects_the_environment(hub, tmp_path, monkeypatch, home):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    done = run_cli("models", "download", "nemo-q4_k_m", home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path / "hf-home" / "hub"))
    assert "downloading nemo-q4_k_m: 0.00 of 0.00 GB (100%)" in done.stderr
    listed = run_cli("models", "list", "--json", home=home)
    row = next(r for r in __import__("json").loads(listed.stdout) if r["name"] == "nemo-q4_k_m")
    assert row["path"] == done.stdout.strip()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = run_cli("models", "download", "nemo-q8_0", home=home)
    assert offline.returncode == 2
    assert offline.stderr.count("\n") == 1 and "HF_HUB_OFFLINE" in offline.stderr and "--model" in offline.stderr
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    unreachable = run_cli("models", "download", "nemo-q8_0", home=home)
    assert unreachable.returncode == 2 and unreachable.stderr.startswith("nemo-chat: cannot reach the Hugging Face Hub")
