"""A desktop app: one instance per home (a second start opens the first), and a launcher entry."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from app.base.instance import LOCK_NAME, InstanceLock
from app.services import desktop
from conftest import free_port, run_cli


def start_ui(home, port: int) -> subprocess.Popen:
    """`nemo-chat ui` in a child process, once it answers HTTP."""
    env = {**os.environ, "NEMO_CHAT_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "app", "ui", "--no-browser", "--port", str(port),
                               "--model", "smollm2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            return server
        except OSError:
            assert server.poll() is None, "the first UI died at start"
            assert time.monotonic() < deadline, "the first UI did not answer"
            time.sleep(0.2)


def test_a_second_ui_on_the_same_home_prints_the_running_url_and_exits_0(home):
    first_port = free_port()
    first = start_ui(home, first_port)
    try:
        second = run_cli("ui", "--no-browser", "--port", str(free_port()), home=home, timeout=10)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == f"nemo-chat: already running on this home: http://127.0.0.1:{first_port}/"
        assert first.poll() is None, "the first app keeps serving"
        assert oct((home / LOCK_NAME).stat().st_mode & 0o777) == "0o600"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # the first is gone (killed: no clean-up ran); its lock file with its pid is stale and taken over
    assert json.loads((home / LOCK_NAME).read_text())["pid"] == first.pid
    second_port = free_port()
    second = start_ui(home, second_port)
    try:
        assert InstanceLock(home).running().url == f"http://127.0.0.1:{second_port}/"
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert InstanceLock(home).running() is None, "a stopped app leaves no running record"


def test_a_lock_record_of_a_dead_process_is_stale(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from app.base.instance import InstanceLock; "
        f"lock = InstanceLock({str(tmp_path)!r}); assert lock.claim('http://127.0.0.1:1/'); print('held', flush=True); "
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert holder.stdout.readline().strip() == "held"
    lock = InstanceLock(tmp_path)
    assert lock.running().pid == holder.pid
    assert not lock.claim("http://127.0.0.1:2/"), "a live holder keeps the home"
    holder.kill()
    holder.wait(timeout=30)
    assert lock.running() is None
    assert lock.claim("http://127.0.0.1:2/")
    assert InstanceLock(tmp_path).running().pid == os.getpid()
    lock.release()


def test_desktop_install_writes_an_entry_that_desktop_file_validate_accepts(home, tmp_path):
    validate = shutil.which("desktop-file-validate")
    assert validate, "scripts/setup.sh test installs desktop-file-utils"
    data_home = tmp_path / "xdg data"
    env_home = {"XDG_DATA_HOME": str(data_home)}
    result = subprocess.run([sys.executable, "-m", "app", "desktop", "install"], capture_output=True, text=True,
                            env={**os.environ, **env_home, "NEMO_CHAT_HOME": str(home)}, timeout=60)
    assert result.returncode == 0, result.stderr
    entry = data_home / "applications" / "nemo-chat.desktop"
    icon = data_home / "icons" / "hicolor" / "scalable" / "apps" / "nemo-chat.svg"
    assert str(entry) in result.stdout and icon.read_bytes().startswith(b"<svg")
    check = subprocess.run([validate, str(entry)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    exec_line = next(line for line in entry.read_text().splitlines() if line.startswith("Exec="))
    assert exec_line.endswith(f"--home {home} ui") and os.access(exec_line[5:].split()[0], os.X_OK)
    result = subprocess.run([sys.executable, "-m", "app", "desktop", "uninstall"], capture_output=True, text=True,
                            env={**os.environ, **env_home}, timeout=60)
    assert result.returncode == 0 and not entry.exists() and not icon.exists()


@pytest.mark.parametrize("path", ["/opt/my apps/nemo-chat", '/o"dd/$HOME/50%/back\\slash'])
def test_exec_arguments_are_quoted_as_the_spec_asks(tmp_path, monkeypatch, path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    written = desktop.install([path, "ui"])
    check = subprocess.run([shutil.which("desktop-file-validate"), str(written.entry)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    if "slash" in path:  # the quoting rule, then the string escape on top (a literal backslash: four)
        assert 'Exec="/o\\\\"dd/\\\\$HOME/50%%/back\\\\\\\\slash" ui' in written.entry.read_text()
    assert desktop.uninstall() == [written.entry, written.icon]
