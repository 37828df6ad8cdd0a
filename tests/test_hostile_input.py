"""Issue 19, hostile input and private files, each against the real thing (the CLI or the app in a
child process, real SQLite, the real engine):

- imports are bounded and linear: content nested 40 levels deep is refused in one line, a 50,000-node
  ChatGPT branch listed children first imports, each within 10 s of CPU time (the command's own
  work: the wall clock on a shared machine says more about the neighbours; both are printed);
- a 90 MB text is read in the child: the app's own peak memory stays under 1.5 GB;
- what the app writes is for its user only, under the usual umask 022, and an open home is tightened;
- an OpenAI export with tool messages opens, continues and exports.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, run_cli

from app.base.config import Settings, save_settings
from app.base.errors import UserError
from app.history import MIGRATIONS, History
from app.storage.database import Database, migrate

PROJECT = Path(__file__).resolve().parent.parent


def one_line_refusal(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip()


def timed_cli(*args: str, home: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`run_cli` and the CPU seconds the command used: its work, whatever else this machine runs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = run_cli(*args, home=home, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"{args[0]} {Path(args[1]).name}: {cpu:.1f} s of CPU, {time.monotonic() - started:.1f} s on the clock")
    return result, cpu


def conversations(home: Path) -> list[dict]:
    history = History(home / "nemo-chat.db")
    try:
        return history.conversations(limit=-1)
    finally:
        history.close()


# -- imports: bounded and linear --------------------------------------------------------------------
def test_content_nested_40_levels_deep_is_refused_in_one_line_within_10_s(tmp_path, home):
    nested = tmp_path / "nested.json"
    nested.write_text('{"messages":[{"role":"user","content":' + "[" * 40 + '"x"' + "]" * 40 + "}]}")
    assert nested.stat().st_size < 128, "a file of about 100 bytes"
    refused, cpu = timed_cli("import", str(nested), home=home)
    assert one_line_refusal(refused) == "nemo-chat: nested.json: refused, nested more than 32 levels deep (the limit)"
    assert cpu < 10
    abyss = tmp_path / "abyss.json"  # deeper than Python's JSON parser goes
    abyss.write_text("[" * 200_000 + "]" * 200_000)
    assert one_line_refusal(run_cli("import", str(abyss), home=home)).endswith(
        "abyss.json: refused, nested more than 32 levels deep (the limit)")
    assert conversations(home) == [], "nothing half-written"


def chatgpt_branch(count: int) -> list[dict]:
    """One ChatGPT conversation: a single branch of `count` messages, listed children first."""
    mapping = {}
    for i in reversed(range(count)):
        mapping[f"n{i}"] = {
            "id": f"n{i}", "parent": f"n{i - 1}" if i else "root", "children": [f"n{i + 1}"] if i + 1 < count else [],
            "message": {"id": f"n{i}", "author": {"role": "user" if i % 2 == 0 else "assistant"},
                        "create_time": 1700000000 + i, "content": {"content_type": "text", "parts": [f"message {i}"]}}}
    mapping["root"] = {"id": "root", "parent": None, "children": ["n0"], "message": None}
    return [{"id": "c-long", "title": "A long branch", "create_time": 1700000000, "current_node": f"n{count - 1}",
             "mapping": mapping}]


def test_a_50000_node_chatgpt_branch_listed_children_first_imports_within_10_s(tmp_path, home):
    export = tmp_path / "conversations.json"
    export.write_text(json.dumps(chatgpt_branch(50_000)), encoding="utf-8")
    done, cpu = timed_cli("import", str(export), "--json", home=home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"conversations": 1, "messages": 50_000, "skipped": 0}
    assert cpu < 10
    history = History(home / "nemo-chat.db")
    [conversation] = history.conversations()
    shown = history.messages(conversation["id"])
    assert [m["content"] for m in shown[:2]] == ["message 0", "message 1"] and len(shown) == 50_000
    assert shown[-1]["content"] == "message 49999"
    history.close()


def test_a_file_over_the_node_or_text_cap_is_refused_in_one_line(monkeypatch):
    from app.services import history_formats

    monkeypatch.setattr(history_formats, "MAX_NODES", 1000)  # the real caps take files of hundreds of MB
    monkeypatch.setattr(history_formats, "MAX_TEXT_CHARS", 100)
    crowded = {"messages": [{"role": "user", "content": "hi", "x": [[]] * 999}]}
    with pytest.raises(UserError) as refused:
        history_formats.read_conversations(crowded, "crowded.json")
    assert str(refused.value) == "crowded.json: refused, more than 1,000 JSON objects and lists (the limit)"
    with pytest.raises(UserError) as refused:
        history_formats.read_conversations({"messages": [{"role": "user", "content": "a" * 101}]}, "long.json")
    assert str(refused.value) == "long.json: refused, a text of more than 100 characters (the limit)"
    at_the_caps = {"messages": [{"role": "user", "content": "a" * 100, "x": [[]] * 996}]}
    assert len(history_formats.read_conversations(at_the_caps, "fits.json").conversations) == 1


# -- a huge text is read in the child ----------------------------------------------------------------
READ_AND_MEASURE = textwrap.dedent("""
    import json, sys
    from app.documents.reading import read_document
    document = read_document(sys.argv[1], timeout_s=900)
    # VmHWM is this process's own peak; ru_maxrss would carry pytest's peak over the exec
    peak_kb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
    print(json.dumps({"peak_mb": peak_kb / 1024,
                      "chars": len(document.markdown), "chunks": len(document.chunks), "tokens": document.tokens,
                      "biggest": max(c.tokens for c in document.chunks), "sections": len({c.section for c in document.chunks}),
                      "first": document.chunks[0].text[:40], "last": document.chunks[-1].text[-40:]}))
""")


def write_big_text(path: Path, megabytes: int) -> None:
    """Markdown of `megabytes` MB: headings, paragraphs, a list and a fenced code block with blank lines."""
    words = "river stone garden window lantern harvest meadow silver orchard compass".split()
    paragraph = " ".join(words[(i * 7) % len(words)] for i in range(180)) + "."
    with path.open("w", encoding="utf-8") as out:
        for block in range(megabytes):
            parts = [f"## Part {block}"]
            for n in range(500):
                parts.append(f"Paragraph {block}.{n}: {paragraph}")
                if n % 100 == 99:
                    parts.append("```python\nx = 1\n\n\ny = 2\n```\n\n- one\n- two")
            text = "\n\n".join(parts) + "\n\n"
            out.write((text * (2**20 // len(text) + 1))[: 2**20 - 2].rsplit("\n\n", 1)[0] + "\n\n")
        out.write("The end of the text.\n")


def test_a_90_mb_text_is_read_in_the_child_with_the_app_under_1_5_gb(tmp_path):
    path = tmp_path / "huge.md"
    write_big_text(path, 90)
    assert path.stat().st_size > 89 * 2**20
    clean = {name: value for name, value in os.environ.items() if not name.startswith("NEMO_CHAT_")}
    result = subprocess.run([sys.executable, "-c", READ_AND_MEASURE, str(path)], capture_output=True, text=True,
                            cwd=PROJECT, timeout=1200, env=clean)  # no home or setting left by an earlier test
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    print(f"90 MB text: the app's peak RSS {read['peak_mb']:.0f} MB, {read['chunks']:,} chunks, {read['tokens']:,} tokens")
    assert read["peak_mb"] < 1536, read
    assert read["chars"] > 89 * 2**20 and read["tokens"] > 10_000_000 and read["biggest"] <= 256 + 8
    assert read["chunks"] > read["tokens"] // 300 and read["sections"] >= 90
    assert read["first"].startswith("## Part 0") and read["last"].endswith("The end of the text.")


# -- private files -----------------------------------------------------------------------------------
def at_umask(mask: int):
    return lambda: os.umask(mask)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def upload(url: str, name: str, data: bytes) -> str:
    boundary = "nemo-" + secrets.token_hex(8)
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(urllib.request.urlopen(request, timeout=60).read())[0]


def test_files_are_for_the_user_only_after_a_run_under_umask_022(tmp_path, home):
    previous = os.umask(0o022)  # a home left open by an earlier version
    try:
        home.mkdir()
        History(home / "nemo-chat.db").close()
        (home / "logs").mkdir()
    finally:
        os.umask(previous)
    save_settings(Settings(model="smollm2", n_ctx=512))
    assert mode(home) == 0o755 and mode(home / "nemo-chat.db") == 0o644
    export = tmp_path / "exported.json"
    assert subprocess.run([sys.executable, "-m", "app", "export", "-o", str(export)], env=os.environ,
                          preexec_fn=at_umask(0o022), capture_output=True, timeout=120).returncode == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "app", "ui", "--no-browser", "--port", str(port)],
                              env=os.environ, preexec_fn=at_umask(0o022), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180  # a guard against hanging, not a speed requirement
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the app did not start"
                time.sleep(0.2)
        uploaded = Path(upload(url, "note.txt", b"hello"))
        assert uploaded.is_file() and home / "tmp" in uploaded.parents
        files = [home / "nemo-chat.db", home / "nemo-chat.db-wal", home / "nemo-chat.db-shm", home / "settings.json",
                 home / "logs" / "nemo-chat.log", uploaded, export]
        folders = [home, home / "logs", home / "tmp", uploaded.parent, home / "models"]
        assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}
        assert {str(p): oct(mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = (home / "logs" / "nemo-chat.log").read_text(encoding="utf-8").splitlines()
    assert len([line for line in log if "for this user only" in line]) == 1, log
    assert subprocess.run([sys.executable, "-m", "app", "search", "x"], env=os.environ, preexec_fn=at_umask(0o022),
                          capture_output=True, timeout=120).returncode == 0
    assert len((home / "logs" / "nemo-chat.log").read_text(encoding="utf-8").splitlines()) == len(log), \
        "a private home is left as it is, without a word"


# -- tool messages from elsewhere ---------------------------------------------------------------------
OPENAI_WITH_TOOLS = {"title": "Weather", "messages": [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What is the weather in Paris, and what is 6*7?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_Xyz_0001", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"id": "call_Xyz_0002", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\": \"6*7\"}"}}]},
    {"role": "tool", "tool_call_id": "call_Xyz_0001", "content": "Sunny, 21 degrees"},
    {"role": "tool", "tool_call_id": "call_Xyz_0002", "name": "calculator", "content": "42"},
    {"role": "assistant", "content": "It is sunny in Paris (21 degrees), and 6*7 is 42."},
]}


def test_an_openai_export_with_tool_messages_opens_continues_and_exports(tmp_path, home, engine, tekken):
    from app.faces.chat_view import bubbles
    from app.nemo.prompt import encode_chat
    from app.services.chat import ChatService

    export = tmp_path / "openai.json"
    export.write_text(json.dumps(OPENAI_WITH_TOOLS), encoding="utf-8")
    done = run_cli("import", str(export), "--json", home=home)
    assert json.loads(done.stdout) == {"conversations": 1, "messages": 5, "skipped": 0}, done.stderr

    history = History(home / "nemo-chat.db")
    [conversation] = history.conversations()
    rows = history.messages(conversation["id"])
    assert [r["role"] for r in rows] == ["system", "user", "tool", "tool", "assistant"]
    steps = [json.loads(r["content"]) for r in rows if r["role"] == "tool"]
    assert [(s["name"], s["arguments"], s["result"], s["round"]) for s in steps] == [
        ("get_weather", {"city": "Paris"}, "Sunny, 21 degrees", 1), ("calculator", {"expression": "6*7"}, "42", 1)]
    shown, _ = bubbles(rows)  # opens: each step a collapsible box with its call and result
    titles = [b.get("metadata", {}).get("title", "") for b in shown]
    assert any('get_weather({"city": "Paris"})' in t for t in titles) and "Sunny, 21 degrees" in shown[2]["content"]

    chat = ChatService(history, engine)
    settings = Settings(model="smollm2", n_ctx=2048, temperature=0.0, max_tokens=12, tools="calculator")
    nemo_messages = chat.prompt_messages(conversation["id"], settings, with_tools=True)
    assert [m["role"] for m in nemo_messages] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert encode_chat(tekken, nemo_messages), "NeMo's prompt (function calling) builds from the imported steps"
    final = list(chat.send(conversation["id"], "And in Lyon?", settings))[-1]  # continues, on the real engine
    assert final.done and final.status == "complete" and final.text
    history.close()

    markdown = run_cli("export", "--format", "markdown", home=home)
    assert markdown.returncode == 0, markdown.stderr
    assert 'get_weather({"city": "Paris"})' in markdown.stdout and "Sunny, 21 degrees" in markdown.stdout
    assert "And in Lyon?" in markdown.stdout and final.text.strip()[:20] in markdown.stdout


def test_tool_rows_imported_as_plain_text_before_become_steps(tmp_path, home):
    home.mkdir()
    database = Database(home / "nemo-chat.db")
    migrate(database, MIGRATIONS[:7])  # a database from before m008_readable_tool_steps
    with database.transaction() as conn:
        conn.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('Old import', 1, 1)")
        for role, content in (("user", "Weather?"), ("tool", "Sunny"), ("assistant", "It is sunny.")):
            conn.execute("INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at,"
                         " parent_id) VALUES (1, ?, ?, 'complete', 1, 1, (SELECT MAX(id) FROM messages))", [role, content])
        conn.execute("UPDATE conversations SET current_id = (SELECT MAX(id) FROM messages)")
    database.close()
    markdown = run_cli("export", "--format", "markdown", home=home)
    assert markdown.returncode == 0, markdown.stderr
    assert "`tool({})`" in markdown.stdout and "Sunny" in markdown.stdout and "It is sunny." in markdown.stdout
    step = json.loads(sqlite3.connect(home / "nemo-chat.db").execute(
        "SELECT content FROM messages WHERE role = 'tool'").fetchone()[0])
    assert (step["name"], step["result"], len(step["id"])) == ("tool", "Sunny", 9)
