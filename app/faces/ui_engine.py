"""The Settings tab's engine part: the model runs on this machine, or on an OpenAI-compatible
server (vLLM, NVIDIA NIM, llama.cpp's server, ...) given by its URL, key and model name, with a
"Test connection" that lists the server's models."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from app.base.errors import UserError
from app.engine.remote import RemoteEngine

ON_THIS_MACHINE, ON_A_SERVER = "On this machine", "On a server (OpenAI-compatible)"


def server_models(url: str, key: str) -> list[str]:
    """The names of the models the server lists (GET /v1/models); one-line UserError otherwise."""
    return [m["id"] for m in RemoteEngine(url, key).list_models()]


def connection_report(url: str, key: str) -> tuple[str, list[str]]:
    """What "Test connection" shows, and the model names for the model field."""
    try:
        names = server_models(url, key)
    except UserError as exc:
        return f"⚠️ {exc}", []
    listed = "\n".join(f"- `{name}`" for name in names)
    return f"✅ {url.strip()} answers and serves {len(names)} model{'s' if len(names) != 1 else ''}:\n{listed}", names


def engine_notice(services) -> str:
    """Which engine the app uses now (and what the server said once, if anything)."""
    settings = services.settings
    if not settings.remote.strip():
        return "The model runs **on this machine** (llama.cpp, embedded)."
    model = getattr(services.engine, "served", None) or settings.remote_model or "the first model it lists"
    notice = getattr(services.engine, "notice", "")
    line = f"The model runs **on a server**: `{model}` at {settings.remote}."
    return f"{line}\n\n⚠️ {notice}" if notice else line


def engine_section(services) -> None:
    """The engine part of the Settings tab, built inside the current Blocks context."""
    s = services.settings
    with gr.Accordion("Engine: on this machine or a server", open=bool(s.remote)):
        where = gr.Radio([ON_THIS_MACHINE, ON_A_SERVER], value=ON_A_SERVER if s.remote else ON_THIS_MACHINE,
                         label="Where the model runs", elem_id="engine-where")
        with gr.Group(visible=bool(s.remote)) as server_fields:
            url = gr.Textbox(s.remote, label="Server URL (ending in /v1)", placeholder="http://127.0.0.1:8000/v1",
                             elem_id="engine-url")
            key = gr.Textbox(s.remote_key, label="API key (if the server needs one)", type="password",
                             elem_id="engine-key")
            model = gr.Dropdown(choices=[s.remote_model] if s.remote_model else [], value=s.remote_model or None,
                                allow_custom_value=True, label="Model name (empty: the first the server lists)",
                                elem_id="engine-model")
            parallel = gr.Number(s.parallel, label="Requests at once for summaries and translations (0 = 8)",
                                 precision=0, minimum=0, elem_id="engine-parallel")
            test_btn = gr.Button("Test connection", elem_id="engine-test")
        use_btn = gr.Button("Use this engine", variant="primary", elem_id="engine-use")
        status = gr.Markdown(engine_notice(services), elem_id="engine-status")

    def test(url_text, key_text):
        report, names = connection_report(url_text, key_text)
        return report, gr.update(choices=names) if names else gr.skip()

    def use(where_choice, url_text, key_text, model_name, width):
        remote = (url_text or "").strip() if where_choice == ON_A_SERVER else ""
        try:
            if where_choice == ON_A_SERVER and not remote:
                raise UserError("give the server's URL, ending in /v1")
            services.save_settings(replace(services.settings, remote=remote, remote_key=(key_text or "").strip(),
                                           remote_model=(model_name or "").strip(), parallel=int(width or 0)))
        except UserError as exc:
            return f"⚠️ Not changed: {exc}"
        return f"✅ Saved. {engine_notice(services)}"

    where.change(lambda choice: gr.update(visible=choice == ON_A_SERVER), where, server_fields)
    test_btn.click(test, [url, key], [status, model])
    use_btn.click(use, [where, url, key, model, parallel], status, concurrency_id="llm", concurrency_limit=1)
