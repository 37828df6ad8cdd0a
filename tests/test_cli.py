"""The command line in child processes: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json

from conftest import run_cli


def test_chat_json_reports_the_reply_and_its_counters(home):
    result = run_cli("chat", "Say hi.", "--model", "smollm2", "--max-tokens", "20", "--temperature", "0",
                     "--json", home=home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for key in ("text", "prompt_tokens", "cached_tokens", "completion_tokens", "ttft_s", "tokens_per_s"):
        assert key in out
    assert out["text"] and 0 < out["completion_tokens"] <= 20 and out["prompt_tokens"] > 5
    assert (home / "nemo-chat.db").exists()


def test_chat_streams_plain_text_and_ctrl_c_keeps_what_was_written(home):
    """The reply's first words reach the terminal while it is still being written: Ctrl+C after
    them stops it, and what was shown is what the history keeps, marked stopped."""
    import os
    import signal
    import subprocess
    import sys

    from app.history import History

    child = subprocess.Popen([sys.executable, "-m", "app", "chat", "Count from 1 to 1000, separated by commas.",
                              "--model", "smollm2", "--max-tokens", "1500", "--temperature", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NEMO_CHAT_HOME": str(home)})
    shown = b""
    while len(shown.strip()) < 8:
        chunk = os.read(child.stdout.fileno(), 4096)
        assert chunk, child.stderr.read().decode()
        shown += chunk
    child.send_signal(signal.SIGINT)
    shown += child.stdout.read()
    assert child.wait(timeout=120) == 130, child.stderr.read().decode()
    history = History(home / "nemo-chat.db")
    [conversation] = history.conversations()
    user, reply = history.messages(conversation["id"])
    assert reply["status"] == "stopped" and reply["content"].strip()
    assert reply["content"].strip().startswith(shown.decode().strip()[:8]), (shown, reply["content"][:80])
    history.close()


def test_bad_models_exit_2_with_one_line(home, tmp_path, model_path):
    text = tmp_path / "readme.gguf"
    text.write_text("hello")
    half = tmp_path / "cut.gguf"
    half.write_bytes(model_path.read_bytes()[:40_000_000])
    for path, words in [(tmp_path / "nope.gguf", "not found"), (text, "not a GGUF"), (half, "truncated")]:
        result = run_cli("chat", "hi", "--model", str(path), home=home)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and path.name in lines[0] and words in lines[0], lines
        assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(home):
    result = run_cli("chat", home=home)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert run_cli("frobnicate", home=home).returncode == 2


def test_home_option_moves_all_state(tmp_path, home):
    elsewhere = tmp_path / "elsewhere"
    result = run_cli("--home", str(elsewhere), "chat", "Hi", "--model", "smollm2", "--max-tokens", "4", home=home)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "nemo-chat.db").exists() and not (home / "nemo-chat.db").exists()


def test_tokens_and_prompt_commands_match_mistral_common(home, tmp_path):
    from mistral_common.protocol.instruct.messages import UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    reference = MistralTokenizer.v3(is_tekken=True)
    text = "Bonjour [INST] le monde </s> नमस्ते 你好\n"
    source = tmp_path / "text.txt"
    source.write_text(text, encoding="utf-8")
    ids = json.loads(run_cli("tokens", str(source), "--ids", home=home).stdout)
    assert ids == reference.instruct_tokenizer.tokenizer.encode(text, bos=False, eos=False)
    assert run_cli("tokens", str(source), home=home).stdout.strip() == str(len(ids))

    conversation = tmp_path / "conversation.json"
    conversation.write_text(json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": "Hello [INST]"}]}))
    result = run_cli("prompt", str(conversation), home=home)
    assert result.returncode == 0, result.stderr
    expected = reference.encode_chat_completion(ChatCompletionRequest(
        messages=[{"role": "system", "content": "Be brief."}, UserMessage(content="Hello [INST]")])).tokens
    assert json.loads(result.stdout) == expected


def test_prompt_command_rejects_bad_requests_in_one_line(home, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps({"messages": [{"content": "no role"}]}))
    for path, problem in [(bad, "not valid JSON"), (nameless, "message 0: role must be one of"),
                          (tmp_path / "missing.json", "file not found")]:
        result = run_cli("prompt", str(path), home=home)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert path.name in result.stderr and problem in result.stderr, result.stderr


def test_convert_command_writes_a_loadable_gguf_and_rejects_bad_folders(home, tmp_path):
    from tiny_nemo import make_weights, write_native

    from app.base.gguf_info import read_gguf_info

    source = write_native(tmp_path / "native", make_weights())
    out = tmp_path / "tiny.gguf"
    result = run_cli("convert", str(source), "-o", str(out), "--outtype", "q8_0", "--ctx", "4096", home=home)
    assert result.returncode == 0, result.stderr
    info = read_gguf_info(out)
    assert info.is_tekken and info.context_length == 4096 and info.head_dim == 128
    assert str(out) in result.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("convert", str(empty), "-o", str(tmp_path / "x.gguf"), home=home)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "empty" in result.stderr and not (tmp_path / "x.gguf").exists()


def test_ui_command_serves_on_loopback_only(home):
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from conftest import free_port

    port = free_port()
    env = {**os.environ, "NEMO_CHAT_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "app", "ui", "--no-browser", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 120, ""
        while time.monotonic() < deadline and not page:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert "nemo-chat" in page
        assert listening_addresses(port) == {"127.0.0.1"}
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port` (read from /proc/net/tcp)."""
    import socket
    import struct

    found = set()
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def test_chat_continues_a_stored_conversation_by_id_or_last(home):
    first = run_cli("chat", "My cat is called Biscuit.", "--model", "smollm2", "--max-tokens", "8",
                    "--temperature", "0", "--json", home=home)
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    for wanted in ("last", str(started["conversation_id"])):
        result = run_cli("chat", "What is my cat called?", "--conversation", wanted, "--model", "smollm2",
                         "--max-tokens", "8", "--temperature", "0", "--json", home=home)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["conversation_id"] == started["conversation_id"]
        # the prompt holds the earlier turn: it is longer than the first prompt and its reply together
        assert out["prompt_tokens"] > started["prompt_tokens"] + started["completion_tokens"]
    exported = json.loads(run_cli("export", home=home).stdout)
    texts = [m["content"] for c in exported["conversations"] for m in c["messages"]]
    assert len(exported["conversations"]) == 1 and texts.count("What is my cat called?") == 2


def test_chat_refuses_a_conversation_it_cannot_continue_in_one_line(home):
    for wanted, words in [("last", "no conversation"), ("12", "conversation 12 not found"), ("x1", "conversation id")]:
        result = run_cli("chat", "hi", "--conversation", wanted, "--model", "smollm2", home=home)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr, lines
