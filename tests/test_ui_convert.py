"""The Settings tab's "Convert a checkpoint" panel in Chromium, on a tiny NeMo checkpoint."""

from __future__ import annotations

from tiny_nemo import make_weights, write_native

from app.base.gguf_info import read_gguf_info


def test_convert_panel_writes_a_gguf_into_the_models_folder(served, page, tmp_path, home):
    _, url = served
    source = write_native(tmp_path / "my-nemo", make_weights())
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    page.get_by_text("Convert a checkpoint to GGUF").click()
    page.locator("#convert-folder textarea").fill(str(source))
    page.locator("#convert-start").click()
    page.wait_for_function("() => document.querySelector('#convert-status').innerText.includes('Wrote')",
                           timeout=120_000)
    written = home / "models" / "my-nemo-q8_0.gguf"
    assert read_gguf_info(written).is_tekken

    page.locator("#convert-folder textarea").fill(str(tmp_path / "nowhere"))
    page.locator("#convert-start").click()
    page.wait_for_function("() => document.querySelector('#convert-status').innerText.includes('nowhere')",
                           timeout=60_000)
    assert "⚠️" in page.locator("#convert-status").inner_text()
