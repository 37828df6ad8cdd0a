"""The Gradio face: layout and event wiring only; every action calls a plain service."""


import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is first imported (ui_* modules do)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from app.base.config import models_dir  # noqa: E402
from app.base.errors import UserError  # noqa: E402
from app.engine.catalog import available_models, short_name  # noqa: E402
from app.faces.chat_view import ChatUI  # noqa: E402
from app.faces.i18n import (  # noqa: E402
    in_page_language,
    language_of,
    language_picker,
    name_tabs,
    redraw_on_switch,
    say,
    t,
)
from app.faces.safe_markdown import safe_markdown  # noqa: E402
from app.faces.temp_files import TabFiles, clean_private_tmp  # noqa: E402
from app.faces.ui_chat import CHAT_KEYS, chat_page  # noqa: E402
from app.faces.ui_convert import convert_panel  # noqa: E402
from app.faces.ui_documents import documents_tab  # noqa: E402
from app.faces.ui_api import api_section  # noqa: E402
from app.faces.ui_engine import engine_section  # noqa: E402
from app.faces.ui_models import model_section  # noqa: E402
from app.faces.ui_tools import mcp_section  # noqa: E402
from app.faces.ui_translate import translate_tab  # noqa: E402
from app.faces.web_guard import allowed_origins, check_bind, guarded_gradio_app, is_loopback, web_guard  # noqa: E402
from app.services.root import Services  # noqa: E402

CSS_PATH = Path(__file__).resolve().parent.parent / "assets" / "app.css"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"]
TOOL_CHOICES = [("settings_tool_datetime", "current_datetime"), ("settings_tool_calculator", "calculator"),
                ("settings_tool_search", "search_conversations")]  # (locale key, tool)
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Consolas", "monospace"]


def build_app(model: str | None = None, max_file_mb: int = 100, services: Services | None = None,
              api_url: str | None = None):
    """The Gradio Blocks app (not launched); `services` are built here unless given; `api_url`:
    where the OpenAI API is served beside it (Settings shows it), None when it is off."""
    clean_private_tmp()  # uploads and downloads of an earlier run are gone
    import gradio as gr

    services = services or Services(model=model)
    ui = ChatUI(services)
    files = TabFiles()

    def save(model_name, n_ctx, n_gpu_layers, temperature, top_p, max_tokens, system_prompt, tools,
             parse_timeout_s, parse_memory_mb, parse_max_pages, kv_states_gib, request: gr.Request):
        numbers = {"settings_field_context": n_ctx, "settings_field_gpu_layers": n_gpu_layers,
                   "settings_field_max_tokens": max_tokens, "settings_field_reading_time": parse_timeout_s,
                   "settings_field_reading_memory": parse_memory_mb, "settings_field_page_limit": parse_max_pages,
                   "settings_field_kv_states": kv_states_gib}
        language = language_of(request)
        try:
            empty = [say(request, key) for key, value in numbers.items() if value is None]
            if empty:
                raise UserError(say(request, "settings_give_number", fields=", ".join(empty)))
            candidate = replace(
                ui.settings, model=(model_name or "").strip(), n_ctx=int(n_ctx), n_gpu_layers=int(n_gpu_layers),
                temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens),
                system_prompt=system_prompt or "", tools=",".join(tools or []),
                parse_timeout_s=float(parse_timeout_s), parse_memory_mb=int(parse_memory_mb),
                parse_max_pages=int(parse_max_pages), kv_states_gib=float(kv_states_gib),
            )
            services.save_settings(candidate)
        except UserError as exc:
            return say(request, "settings_not_saved", message=exc), ui.model_notice(language)
        notice = ui.model_notice(language)
        return say(request, "settings_saved", model_line=notice), notice

    theme = gr.themes.Soft(font=SYSTEM_FONTS, font_mono=MONO_FONTS).set(  # contrast enough for axe-core (WCAG AA)
        button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
        block_label_text_color="*primary_700", block_title_text_color="*primary_700",
        body_text_color_subdued="*neutral_600", checkbox_label_background_fill_selected="*primary_600",
        input_placeholder_color="*neutral_500")
    with gr.Blocks(title="nemo-chat", analytics_enabled=False) as demo:
        chat = chat_page(ui, files, max_file_mb)
        documents_tab(services, files, max_file_mb)
        translate_tab(services, files)
        with gr.Tab(t("tab_settings")):
            s = ui.settings
            picker = language_picker()
            model_name = gr.Dropdown(choices=available_models(), value=ui.model_choice(), allow_custom_value=True,
                                     label=t("settings_model"), elem_id="model-name")
            models_folder = safe_markdown("", elem_id="models-folder")
            with gr.Row():
                n_ctx = gr.Number(s.n_ctx, label=t("settings_context_size"), precision=0, minimum=256)
                n_gpu_layers = gr.Number(s.n_gpu_layers, label=t("settings_gpu_layers"), precision=0, minimum=-1)
                max_tokens = gr.Number(s.max_tokens, label=t("settings_max_tokens"), precision=0, minimum=1)
            with gr.Row():
                temperature = gr.Slider(0, 2, s.temperature, step=0.05, label=t("settings_temperature"))
                top_p = gr.Slider(0.05, 1, s.top_p, step=0.01, label=t("settings_top_p"))
            system_prompt = gr.Textbox(s.system_prompt, label=t("settings_system_prompt"), lines=3)
            tools = gr.CheckboxGroup([(t(key), tool) for key, tool in TOOL_CHOICES],
                                     value=[tool for tool in s.tools.split(",") if tool], label=t("settings_tools"))
            with gr.Accordion(t("settings_reading_limits"), open=False):
                with gr.Row():  # untrusted files are read in a child process within these bounds
                    parse_timeout_s = gr.Number(s.parse_timeout_s, label=t("settings_reading_time"), minimum=1,
                                                elem_id="parse-timeout")
                    parse_memory_mb = gr.Number(s.parse_memory_mb, label=t("settings_reading_memory"),
                                                precision=0, minimum=0, elem_id="parse-memory")
                    parse_max_pages = gr.Number(s.parse_max_pages, label=t("settings_page_limit"),
                                                precision=0, minimum=0, elem_id="parse-pages")
            # disk for the K/V states of conversations left (app/engine/kv_states.py): read by the engine at start
            kv_states_gib = gr.Number(s.kv_states_gib, label=t("settings_kv_states"), minimum=0, elem_id="kv-states")
            save_btn = gr.Button(t("settings_save"), variant="primary", elem_id="save-settings")
            settings_status = safe_markdown("", elem_id="settings-status")
            model_section(services, model_name, n_ctx)
            convert_panel(services, on_done=(lambda: gr.update(choices=available_models()), model_name))
            engine_section(services)
            mcp_section(services)
            api_section(api_url, short_name(services.settings.model) or "smollm2")

        settings_fields = [n_ctx, n_gpu_layers, max_tokens, temperature, top_p, system_prompt, tools,
                           parse_timeout_s, parse_memory_mb, parse_max_pages, kv_states_gib]

        def page_opened(request: gr.Request):
            """What depends on the moment, written when a tab opens: the Settings fields show the
            settings now in use, not those the page was built with."""
            now = ui.settings
            choices = ui.conversation_choices(language=language_of(request))
            return (gr.update(choices=choices), ui.model_choice(), now.n_ctx, now.n_gpu_layers,
                    now.max_tokens, now.temperature, now.top_p, now.system_prompt,
                    [tool for tool in now.tools.split(",") if tool], now.parse_timeout_s, now.parse_memory_mb,
                    now.parse_max_pages, now.kv_states_gib)

        def page_words(request: gr.Request):
            """The model line and the models folder, in the page's language."""
            return ui.model_notice(language_of(request)), say(request, "settings_models_folder", folder=models_dir())

        demo.load(page_opened, None, [chat.conversations, model_name, *settings_fields])
        in_page_language(page_words, None, [chat.model_line, models_folder])
        demo.load(None, js=CHAT_KEYS)
        name_tabs(demo)
        redraw_on_switch(demo, picker)

        def tab_closed(request: gr.Request):
            """A browser tab went away: stop its jobs, delete the files made for it."""
            chat.tab_closed(request)
            services.jobs.forget(request.session_hash)
            files.forget(request.session_hash)

        demo.unload(tab_closed)
        save_btn.click(save, [model_name, n_ctx, n_gpu_layers, temperature, top_p, max_tokens, system_prompt, tools,
                              parse_timeout_s, parse_memory_mb, parse_max_pages, kv_states_gib],
                       [settings_status, chat.model_line])
    demo.nemo, demo.chat_ui = services, ui  # tests reach the services (and the chat view) through the app
    return demo, dict(theme=theme, css=CSS_PATH.read_text(encoding="utf-8"))


def launch(demo, style: dict, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False,
           block: bool = True, max_file_mb: int = 100, allow_hosts=(), token: str | None = None, api=None,
           allow_origins=()):
    """Serve privately: loopback by default, no share link, no monitoring, no extra paths, no SSR
    or file workers beside the app; every route behind `web_guard` (Host allow-list, Origin, token,
    CSP), outside Gradio's own layers; the page in the browser's language or the one chosen in
    Settings (`faces.i18n`). `api`: the OpenAI API app served at /v1 on the same port, behind the
    same guard."""
    from app.faces.api_server import ApiMount
    from app.faces.i18n import I18N, page_head

    check_bind(host, token)
    guard = web_guard(host, port, allow_hosts, token, allow_origins)
    app = guarded_gradio_app(lambda stack: guard(ApiMount(stack, api) if api is not None else stack))
    return demo.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=False, inbrowser=open_browser,
        enable_monitoring=False, allowed_paths=[], max_file_size=f"{max_file_mb}mb",
        prevent_thread_lock=not block, quiet=True, footer_links=[], ssr_mode=False, num_workers=0,
        mcp_server=False, _app=app, i18n=I18N, head=page_head(), **style,
    )


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = True,
          allow_hosts=(), token: str | None = None, api: bool = False, allow_origins=(), **settings) -> None:
    """The `ui` command: refuses a non-loopback bind without a token before loading anything.
    `settings` override saved ones for this run (the engine: remote, remote_key, ...)."""
    check_bind(host, token)
    allowed_origins(allow_origins)  # a badly written origin stops here, before anything loads
    from app.faces.api_server import api_app, api_service

    with Services(model=model, **settings) as services:
        api_url = f"http://{host}:{port}/v1" if api else None
        demo, style = build_app(services=services, api_url=api_url)
        print(f"nemo-chat: serving on http://{host}:{port}" + (f" (OpenAI API at {api_url})" if api else ""),
              flush=True)
        if not is_loopback(host):
            print(f"nemo-chat: reachable from other machines on port {port}; every request needs the token "
                  "(user nemo, password = the token)", flush=True)
        launch(demo, style, host, port, open_browser, allow_hosts=allow_hosts, token=token,
               api=api_app(api_service(services)) if api else None, allow_origins=allow_origins)
