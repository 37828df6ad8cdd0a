"""The catalog, names, the recommended quant, GGUF inspection, and the Settings tab's model part
(plan, context costs, downloads from a hub stand-in) in Chromium."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from hub_standin import CONTENT, hub  # noqa: F401  (hub is a fixture)
from sparse_nemo import write_sparse_nemo

from app.base.errors import UserError
from app.engine.gpu_plan import detected_gpu, vram_gpu
from app.engine.catalog import CATALOG, describe_gguf, recommend, resolve_model
from app.faces.ui_models import plan_markdown

GIB = 2**30


@pytest.fixture(scope="module")
def nemo_q4(tmp_path_factory):
    return write_sparse_nemo(tmp_path_factory.mktemp("nemo") / "nemo.gguf", "Q4_K_M", template="")


def test_catalog_names_and_files():
    assert list(CATALOG) == ["nemo-q4_k_m", "nemo-q5_k_m", "nemo-q6_k", "nemo-q8_0"]
    assert {m.repo for m in CATALOG.values()} == {"bartowski/Mistral-Nemo-Instruct-2407-GGUF"}
    assert CATALOG["nemo-q6_k"].filename == "Mistral-Nemo-Instruct-2407-Q6_K.gguf"
    assert [round(m.size_bytes / 1e9, 2) for m in CATALOG.values()] == [7.47, 8.72, 10.05, 13.01]


def test_a_catalog_name_not_downloaded_says_how(hub):  # an empty cache
    with pytest.raises(UserError, match=r"^model 'nemo-q8_0' is not downloaded: run `nemo-chat models download "
                                        r"nemo-q8_0` \(13.0 GB\) or point --model at a GGUF file$"):
        resolve_model("nemo-q8_0")


@pytest.mark.parametrize("card,name", [(8, "nemo-q4_k_m"), (12, "nemo-q4_k_m"), (16, "nemo-q6_k"),
                                       (24, "nemo-q8_0"), (80, "nemo-q8_0")])
def test_the_recommended_quant_fits_the_card(card, name):
    assert recommend(vram_gpu(card), 64 * GIB)[0] == name


def test_without_a_gpu_the_smallest_quant_is_recommended():
    name, why = recommend(None, 4 * GIB)
    assert name == "nemo-q4_k_m" and str(why).startswith("no NVIDIA GPU") and "is free" in str(why)


def test_info_reads_the_header_only(nemo_q4, model_path, home):
    d = describe_gguf(nemo_q4)  # the tensor data is a hole: nothing was loaded
    assert (d["architecture"], d["parameters"], d["file_type"], d["layers"]) == ("llama", 12_247_782_400, "Q4_K_M", 40)
    assert (d["heads"], d["kv_heads"], d["head_dim"], d["context_length"]) == (32, 8, 128, 1_024_000)
    assert {k: v["tensors"] for k, v in d["quant_mix"].items()} == {"Q4_K": 241, "Q6_K": 41, "F32": 81}
    assert d["tekken"] and d["chat_template"] == "none" and d["kv_cache_bytes_per_token_f16"] == 160 * 1024
    done = run_cli("models", "info", str(model_path), "--json", home=home)
    smol = json.loads(done.stdout)
    assert (smol["tekken"], smol["chat_template"], smol["vocab_size"], smol["file_type"]) == (False, "chatml", 49152, "Q4_1")
    text = run_cli("models", "info", str(nemo_q4), home=home).stdout
    assert "12.25 B" in text and "Q4_K_M: Q4_K 5.63 GB in 241 tensors" in text and "Tekken" in text


def test_plan_markdown_shows_the_plan_the_largest_context_and_costs(nemo_q4, monkeypatch):
    from app.engine import gpu_plan

    monkeypatch.setattr(gpu_plan, "detected_gpu", lambda: vram_gpu(12))
    monkeypatch.setattr(gpu_plan, "gpu_offload_supported", lambda: True)
    text = plan_markdown(str(nemo_q4), 8192)
    assert "**GPU plan** for nemo.gguf: all 41 layers on the GPU, 8k context, f16 KV cache" in text
    assert "The largest context that fits: **32k** (q8_0 K/V cache)" in text
    assert "| 128k | 20.0 GiB | 10.6 GiB | 5.6 GiB |" in text
    assert "manual" in plan_markdown(str(nemo_q4), 8192, "manual", "q4_0")


def test_the_plan_of_a_model_not_downloaded_points_to_the_download_below(hub):  # an empty cache
    text = plan_markdown("nemo-q8_0", 8192)
    assert text == ("⚠️ nemo-q8_0 is not downloaded yet (13.0 GB): download it under “Download a model” below, "
                    "or choose another model.")


def test_settings_tab_download_error_says_what_to_do_in_the_app(hub, served, page, monkeypatch):
    from huggingface_hub import constants

    from app.base.config import models_dir

    demo, url = served
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    page.get_by_text("Download a model").click()
    page.locator("#download-choice input").click()
    page.get_by_role("option", name="nemo-q5_k_m", exact=False).click()
    page.locator("#download").click()
    status = page.locator("#download-status", has_text="HF_HUB_OFFLINE")
    status.wait_for(timeout=30_000)
    text = status.inner_text().strip()
    assert "\n" not in text and str(models_dir()) in text and "Model list" in text, text
    assert "--model" not in text and "command" not in text, text


def test_settings_tab_shows_the_plan_and_downloads_with_progress(hub, served, page, artifacts):
    demo, url = served
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    plan = page.locator("#gpu-plan")
    plan.wait_for(timeout=30_000)
    if detected_gpu() is None:  # on a GPU machine the plan names the card instead
        assert "no NVIDIA GPU found: all 31 layers on the CPU, 2k context, f16 KV cache" in plan.inner_text()
    else:
        assert detected_gpu().name in plan.inner_text()
    page.locator("#context-preset input").click()
    page.get_by_role("option", name="8k · K/V 0.2 GiB f16, 0.1 GiB q8_0, 0.0 GiB q4_0").click()
    page.wait_for_function("() => document.querySelector('#gpu-plan').innerText.includes('8k context')", timeout=30_000)
    page.get_by_text("Download a model").click()
    page.locator("#download-choice input").click()
    page.get_by_role("option", name="nemo-q4_k_m · 7.5 GB · recommended").click()
    hub.pace, hub.hold_at = 0.05, len(CONTENT) // 2  # the hub waits half way until Stop is pressed
    page.locator("#download").click()
    status = "() => document.querySelector('#download-status').innerText"
    page.wait_for_function(f"{status}.includes('downloading nemo-q4_k_m: ')", timeout=30_000)
    page.locator("#download-stop").click()
    [job] = demo.nemo.jobs.of_kind("download")
    assert job.cancel.wait(30), "the Stop reached the download while the hub held its bytes"
    hub.release.set()
    page.wait_for_function(f"{status}.includes('Stopped')", timeout=30_000)
    page.screenshot(path=str(artifacts / "settings-models.png"), full_page=True)
    hub.pace = 0.0
    page.locator("#download").click()
    page.wait_for_function(f"{status}.includes('is ready')", timeout=60_000)
    assert [rng for method, rng, _ in hub.requests if method == "GET"][-1].startswith("bytes=")  # resumed
    assert resolve_model("nemo-q4_k_m").read_bytes() == CONTENT
    assert page.locator("#model-name input").input_value() == "nemo-q4_k_m"
