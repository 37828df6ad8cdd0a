"""Settings survive restarts; a damaged settings file falls back to the defaults."""

from __future__ import annotations

import time

from app.base.config import Settings, load_settings, save_settings, settings_path


def test_settings_round_trip_and_defaults(home):
    assert load_settings() == Settings() and Settings().temperature == 0.3
    chosen = Settings(model="smollm2", n_ctx=4096, temperature=0.7, system_prompt="Sois bref. 简短。")
    save_settings(chosen)
    assert load_settings() == chosen
    settings_path().write_text('{"n_ctx": "lots", "temperature": 0.5, "unknown": 1}')
    assert load_settings() == Settings(temperature=0.5)  # the bad value falls back, the good one stays
    settings_path().write_text("{not json")
    assert load_settings() == Settings()


def test_the_ui_opens_without_any_model_and_says_how_to_get_one(home, monkeypatch, page):
    from app.engine import catalog as models
    from app.ui import build_app, launch
    from conftest import free_port

    monkeypatch.setitem(models.BUILTIN_NAMES, "smollm2", lambda: None)  # as on a machine with no model
    demo, style = build_app()
    port = free_port()
    launch(demo, style, port=port, block=False)
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#model-line", has_text="No model found").wait_for(timeout=30_000)
        page.locator("#message-box textarea").click()
        page.keyboard.type("Hello?")
        page.keyboard.press("Enter")  # the box's own arrow sends too; a person presses Enter
        page.locator("#notice", has_text="No model found").wait_for(timeout=30_000)
        assert demo.nemo.history.conversations() == []  # nothing half-written
    finally:
        demo.close()


def test_an_emptied_number_field_is_refused_in_one_line_and_nothing_is_saved(served, page):
    demo, url = served
    before = demo.nemo.settings
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    # the page fills the fields with the settings in use once it has opened: wait for that, as a person
    # sees the form settle, or it writes the number back over the emptied field (CI caught the race)
    page.locator("#models-folder", has_text="GGUF files").wait_for(timeout=30_000)
    field = page.get_by_label("Context size (tokens)")
    field.fill("")
    page.locator("#save-settings").click()
    status = page.locator("#settings-status", has_text="Not saved")
    status.wait_for(timeout=30_000)
    assert "Context size: give a number" in status.inner_text() and "Traceback" not in status.inner_text()
    assert demo.nemo.settings == before and load_settings() == before


def test_the_disk_for_saved_conversation_states_is_set_in_settings_and_read_at_start(served, page, artifacts):
    """Typed in Settings and saved; settings.json keeps it and an engine made from the settings (as
    at the next start) keeps its conversations' K/V states within it; 0 keeps none."""
    from app.engine.llama import LlamaEngine

    demo, url = served
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#models-folder", has_text="GGUF files").wait_for(timeout=30_000)  # the form has settled
    field = page.locator("#kv-states input")
    assert field.input_value() == "4", "the default, 4 GiB"
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.5")
    page.locator("#save-settings").click()
    page.locator("#settings-status", has_text="Saved").wait_for(timeout=60_000)
    page.locator("#kv-states").screenshot(path=str(artifacts / "settings-kv-states.png"))
    assert load_settings().kv_states_gib == 0.5 and demo.nemo.settings.kv_states_gib == 0.5
    assert LlamaEngine.from_settings(load_settings())._states_budget == 2**29
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0")
    page.locator("#save-settings").click()
    deadline = time.monotonic() + 60  # the status already says "Saved": wait for the file instead
    while load_settings().kv_states_gib != 0:
        assert time.monotonic() < deadline, "the second save never landed"
        time.sleep(0.05)
    assert LlamaEngine.from_settings(load_settings())._states_folder is None, "0 keeps no state"
