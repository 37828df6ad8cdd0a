"""The Gradio face: layout and event wiring only; every action calls a plain service."""


import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is first imported (ui_* modules do)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from app.base.config import models_dir  # noqa: E402
from app.base.errors import UserError  # noqa: E402
from app.engine.catalog import available_models  # noqa: E402
from app.faces.chat_view import ChatUI  # noqa: E402
from app.faces.temp_files import TabFiles, clean_private_tmp  # noqa: E402
from app.faces.ui_chat import ESCAPE_STOPS, chat_page  # noqa: E402
from app.faces.ui_convert import convert_panel  # noqa: E402
from app.faces.ui_documents import documents_tab  # noqa: E402
from app.faces.ui_engine import engine_section  # noqa: E402
from app.faces.ui_models import model_section  # noqa: E402
from app.faces.ui_translate import translate_tab  # noqa: E402
from app.faces.web_guard import check_bind, guard_middleware, is_loopback  # noqa: E402
from app.services.root import Services  # noqa: E402

CSS_PATH = Path(__file__).resolve().parent.parent / "assets" / "app.css"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"]
TOOL_CHOICES = [("Date and time", "current_datetime"), ("Calculator", "calculator"),
                ("Search my conversations", "search_conversations")]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Consolas", "monospace"]


def build_app(model: str | None = None, max_file_mb: int = 100, services: Services | None = None):
    """The Gradio Blocks app (not launched); `services` are built here unless given."""
    clean_private_tmp()  # uploads and downloads of an earlier run are gone
    import gradio as gr

    services = services or Services(model=model)
    ui = ChatUI(services)
    files = TabFiles()

    def save(model_name, n_ctx, n_gpu_layers, temperature, top_p, max_tokens, system_prompt, tools,
             parse_timeout_s, parse_memory_mb, parse_max_pages):
        numbers = {"Context size": n_ctx, "GPU layers": n_gpu_layers, "Max reply tokens": max_tokens,
                   "Reading time limit": parse_timeout_s, "Reading memory limit": parse_memory_mb,
                   "Page limit": parse_max_pages}
        try:
            empty = [label for label, value in numbers.items() if value is None]
            if empty:
                raise UserError(f"{', '.join(empty)}: give a number")
            candidate = replace(
                ui.settings, model=(model_name or "").strip(), n_ctx=int(n_ctx), n_gpu_layers=int(n_gpu_layers),
                temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens),
                system_prompt=system_prompt or "", tools=",".join(tools or []),
                parse_timeout_s=float(parse_timeout_s), parse_memory_mb=int(parse_memory_mb),
                parse_max_pages=int(parse_max_pages),
            )
            services.save_settings(candidate)
        except UserError as exc:
            return f"⚠️ Not saved: {exc}", ui.model_notice()
        return f"✅ Saved. {ui.model_notice()}", ui.model_notice()

    theme = gr.themes.Soft(font=SYSTEM_FONTS, font_mono=MONO_FONTS)
    with gr.Blocks(title="nemo-chat", analytics_enabled=False) as demo:
        chat = chat_page(ui)
        documents_tab(services, files, max_file_mb)
        translate_tab(services, files)
        with gr.Tab("Settings"):
            s = ui.settings
            model_name = gr.Dropdown(choices=available_models(), value=ui.model_choice(), allow_custom_value=True,
                                     label="Model (catalog name or path to a .gguf file)", elem_id="model-name")
            gr.Markdown(f"GGUF files in `{models_dir()}` are listed here.")
            with gr.Row():
                n_ctx = gr.Number(s.n_ctx, label="Context size (tokens)", precision=0, minimum=256)
                n_gpu_layers = gr.Number(s.n_gpu_layers, label="GPU layers (-1 = all)", precision=0, minimum=-1)
                max_tokens = gr.Number(s.max_tokens, label="Max reply tokens", precision=0, minimum=1)
            with gr.Row():
                temperature = gr.Slider(0, 2, s.temperature, step=0.05, label="Temperature (NeMo: 0.3)")
                top_p = gr.Slider(0.05, 1, s.top_p, step=0.01, label="Top-p")
            system_prompt = gr.Textbox(s.system_prompt, label="System prompt", lines=3)
            tools = gr.CheckboxGroup(TOOL_CHOICES, value=[t for t in s.tools.split(",") if t],
                                     label="Tools NeMo may call (native function calling; NeMo models only)")
            with gr.Accordion("Documents: limits for reading a file", open=False):
                with gr.Row():  # untrusted files are read in a child process within these bounds
                    parse_timeout_s = gr.Number(s.parse_timeout_s, label="Reading time limit (seconds)", minimum=1,
                                                elem_id="parse-timeout")
                    parse_memory_mb = gr.Number(s.parse_memory_mb, label="Reading memory limit (MiB, 0 = none)",
                                                precision=0, minimum=0, elem_id="parse-memory")
                    parse_max_pages = gr.Number(s.parse_max_pages, label="Page limit for PDFs (0 = none)",
                                                precision=0, minimum=0, elem_id="parse-pages")
            save_btn = gr.Button("Save and load the model", variant="primary", elem_id="save-settings")
            settings_status = gr.Markdown("", elem_id="settings-status")
            model_section(services, model_name, n_ctx)
            convert_panel(services, on_done=(lambda: gr.update(choices=available_models()), model_name))
            engine_section(services)

        demo.load(lambda: (gr.update(choices=ui.conversation_choices()), ui.model_notice(), ui.model_choice()), None,
                  [chat.conversations, chat.model_line, model_name])
        demo.load(None, js=ESCAPE_STOPS)

        def tab_closed(request: gr.Request):
            """A browser tab went away: stop its jobs, delete the files made for it."""
            chat.tab_closed(request)
            services.jobs.forget(request.session_hash)
            files.forget(request.session_hash)

        demo.unload(tab_closed)
        save_btn.click(save, [model_name, n_ctx, n_gpu_layers, temperature, top_p, max_tokens, system_prompt, tools,
                              parse_timeout_s, parse_memory_mb, parse_max_pages],
                       [settings_status, chat.model_line])
    demo.nemo, demo.chat_ui = services, ui  # tests reach the services (and the chat view) through the app
    return demo, dict(theme=theme, css=CSS_PATH.read_text(encoding="utf-8"))


def launch(demo, style: dict, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False,
           block: bool = True, max_file_mb: int = 100, allow_hosts=(), token: str | None = None):
    """Serve privately: loopback by default, no share link, no monitoring, no extra paths, no SSR
    or file workers beside the app; every route behind `web_guard` (Host allow-list, token, CSP);
    the page in the browser's language or the one chosen in Settings (`faces.i18n`)."""
    from app.faces.i18n import I18N, page_head

    return demo.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=False, inbrowser=open_browser,
        enable_monitoring=False, allowed_paths=[], max_file_size=f"{max_file_mb}mb",
        prevent_thread_lock=not block, quiet=True, footer_links=[], ssr_mode=False, num_workers=0,
        mcp_server=False, app_kwargs={"middleware": [guard_middleware(host, port, allow_hosts, token)]},
        i18n=I18N, head=page_head(), **style,
    )


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = True,
          allow_hosts=(), token: str | None = None, **settings) -> None:
    """The `ui` command: refuses a non-loopback bind without a token before loading anything.
    `settings` override saved ones for this run (the engine: remote, remote_key, ...)."""
    check_bind(host, token)
    with Services(model=model, **settings) as services:
        demo, style = build_app(services=services)
        print(f"nemo-chat: serving on http://{host}:{port}", flush=True)
        if not is_loopback(host):
            print(f"nemo-chat: reachable from other machines on port {port}; every request needs the token "
                  "(user nemo, password = the token)", flush=True)
        launch(demo, style, host, port, open_browser, allow_hosts=allow_hosts, token=token)
