"""Downloads against a stand-in of the Hugging Face Hub served on 127.0.0.1 over real HTTP
(tests/hub_standin.py): progress, resume, checksum, offline and unreachable hubs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich import filesize
from conftest import free_port, run_cli
from hub_standin import COMMIT, CONTENT, MODEL, SHA256, hub  # noqa: F401  (hub is a fixture)

from app.base.errors import UserError
from app.base.jobs import Job
from app.engine.catalog import resolve_model


def partial_files(tmp_path):
    return list((tmp_path / "hf").rglob("*.incomplete"))


def test_download_reports_progress_and_lands_in_the_cache(hub, tmp_path, monkeypatch):
    from app.engine.downloads import download

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    events = []
    path = download("nemo-q4_k_m", events.append)
    assert path.read_bytes() == CONTENT
    assert path.name == MODEL.filename and f"snapshots/{COMMIT}" in str(path)
    assert path.resolve().name == SHA256  # a blob of the Hugging Face cache, linked from the snapshot
    assert len(events) >= 12 and [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].done == events[-1].total == len(CONTENT)
    assert str(events[0].what) == "downloading nemo-q4_k_m"
    assert {auth for _, _, auth in hub.requests} == {"Bearer hf_test_token"}
    assert resolve_model("nemo-q4_k_m") == path
    hub.requests.clear()
    assert download("nemo-q4_k_m") == path and hub.requests == []  # cached: no network


def test_a_dropped_connection_resumes_with_a_range_request(hub, tmp_path):
    from app.engine.downloads import download

    hub.drop_after = 1_000_000
    path = download("nemo-q4_k_m")
    assert path.read_bytes() == CONTENT
    gets = [rng for method, rng, _ in hub.requests if method == "GET"]
    assert gets[0] is None and gets[1].startswith("bytes=") and int(gets[1][6:].rstrip("-")) > 0


def test_stop_keeps_the_partial_file_and_the_next_call_resumes(hub, tmp_path):
    from app.engine.downloads import download

    def stopped_at_half(progress, cancel):
        def report(p):
            progress(p)
            if p.done > len(CONTENT) // 2:
                cancel.cancel()  # Stop pressed half way
        return download("nemo-q4_k_m", report, cancel)

    outcome = Job(stopped_at_half).run()
    assert outcome.stopped and outcome.value is None
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
    assert str(events[0].what) == "checking the partial download of nemo-q4_k_m"


def test_a_corrupted_file_is_detected_and_deleted(hub, tmp_path):
    from app.engine.downloads import download

    hub.corrupt = True
    with pytest.raises(UserError, match="does not match the hub's checksum and was deleted"):
        download("nemo-q4_k_m")
    assert partial_files(tmp_path) == [] and not list((tmp_path / "hf").rglob(SHA256))
    hub.corrupt = False
    assert download("nemo-q4_k_m").read_bytes() == CONTENT


@pytest.mark.parametrize("etag", ["../../../../escaped", "..", "a/b", "x\\..\\y"])
def test_an_etag_that_is_a_path_is_refused(hub, tmp_path, etag):
    """The ETag names the blob in the cache: a hub (HF_ENDPOINT) cannot make it write elsewhere."""
    from app.engine.downloads import download

    hub.etag = etag
    with pytest.raises(UserError, match="an ETag that is not a checksum"):
        download("nemo-q4_k_m")
    assert not [p for p in tmp_path.rglob("*") if "escaped" in p.name or p.suffix == ".incomplete"]
    assert not (tmp_path.parent / "escaped").exists()
    assert [method for method, _, _ in hub.requests] == ["HEAD"], "no byte was asked for"


def test_offline_and_unreachable_hubs_say_what_to_do(hub, monkeypatch):
    from huggingface_hub import constants

    from app.engine.downloads import download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"^offline \(HF_HUB_OFFLINE is set\) and nemo-q4_k_m is not downloaded: .*--model"):
        download("nemo-q4_k_m")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.server.shutdown()
    hub.server.server_close()
    with pytest.raises(UserError, match=r"^cannot reach the Hugging Face Hub at http://127\.0\.0\.1.*run `nemo-chat "
                                        r"models download nemo-q4_k_m` again to go on where it stopped.*--model"):
        download("nemo-q4_k_m")
    with pytest.raises(UserError, match="unknown model 'nemo-q3'"):
        download("nemo-q3")


def test_in_the_app_the_errors_name_its_own_buttons_and_folder(hub, monkeypatch, home):
    """Settings has no --model and no command to run again: its errors say what to do there."""
    from huggingface_hub import constants

    from app.base.config import models_dir
    from app.engine.downloads import UI_ADVICE, download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as offline:
        download("nemo-q4_k_m", advice=UI_ADVICE)
    assert str(offline.value) == (
        "offline (HF_HUB_OFFLINE is set) and nemo-q4_k_m is not downloaded: unset HF_HUB_OFFLINE to download it, "
        f"or download the .gguf file on another machine and copy it into {models_dir()}: it then appears in the "
        "Model list")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.server.shutdown()
    hub.server.server_close()
    with pytest.raises(UserError) as unreachable:
        download("nemo-q4_k_m", advice=UI_ADVICE)
    message = str(unreachable.value)
    assert message.startswith("cannot reach the Hugging Face Hub at http://127.0.0.1") and "\n" not in message
    assert "press Download again to go on where it stopped" in message and str(models_dir()) in message
    for cli_words in ("--model", "command", "nemo-chat models"):
        assert cli_words not in message and cli_words not in str(offline.value)


def test_cli_download_respects_the_environment(hub, tmp_path, monkeypatch, home):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    done = run_cli("models", "download", "nemo-q4_k_m", home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path / "hf-home" / "hub"))
    size = filesize.decimal(Path(done.stdout.strip()).stat().st_size)
    assert f"downloading nemo-q4_k_m: {size} of {size} in " in done.stderr, done.stderr
    listed = run_cli("models", "list", "--json", home=home)
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "nemo-q4_k_m")
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
