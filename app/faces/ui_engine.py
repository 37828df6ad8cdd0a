"""The Settings tab's engine part: the model runs on this machine, or on an OpenAI-compatible
server (vLLM, NVIDIA NIM, llama.cpp's server, ...) given by its URL, key and model name, with a
"Test connection" that lists the server's models."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from app.base.errors import UserError
from app.engine.remote import RemoteEngine
from app.faces.i18n import in_page_language, language_of, say, t, text
from app.faces.safe_markdown import safe_markdown

ON_THIS_MACHINE, ON_A_SERVER = "here", "server"  # the choice's values; its labels are locale keys


def server_models(url: str, key: str) -> list[str]:
    """The names of the models the server lists (GET /v1/models); one-line UserError otherwise."""
    return [m["id"] for m in RemoteEngine(url, key).list_models()]


def connection_report(url: str, key: str, language: str = "en") -> tuple[str, list[str]]:
    """What "Test connection" shows, and the model names for the model field."""
    try:
        names = server_models(url, key)
    except UserError as exc:
        return text(language, "common_warning", message=exc), []
    listed = "\n".join(f"- `{name}`" for name in names)
    served = text(language, "engine_serves_one" if len(names) == 1 else "engine_serves_many", url=url.strip(),
                  n=len(names))
    return f"{served}\n{listed}", names


def engine_notice(services, language: str = "en") -> str:
    """Which engine the app uses now (and what the server said once, if anything)."""
    settings = services.settings
    if not settings.remote.strip():
        return text(language, "engine_runs_here")
    model = getattr(services.engine, "served", None) or settings.remote_model or text(language, "engine_first_listed")
    notices = getattr(services.engine, "notices", ())
    line = text(language, "engine_runs_on_server", model=model, url=settings.remote)
    return "\n\n".join([line, *(text(language, "common_warning", message=notice) for notice in notices)])


def key_to_use(settings, url_text: str, key_text: str) -> str:
    """A key typed now, else the saved key, but only for the saved server: a new URL never gets it."""
    typed = (key_text or "").strip()
    same_server = (url_text or "").strip().rstrip("/") == settings.remote.strip().rstrip("/")
    return typed or (settings.remote_key if same_server else "")


def key_fields(has_key: bool) -> tuple:
    """The key field (always empty: the key never goes to the page) and the "•••• set" row."""
    return gr.update(value="", visible=not has_key), gr.update(visible=has_key)


def engine_section(services) -> None:
    """The engine part of the Settings tab, built inside the current Blocks context."""
    s = services.settings
    with gr.Accordion(t("engine_title"), open=bool(s.remote)):
        where = gr.Radio([(t("engine_here"), ON_THIS_MACHINE), (t("engine_server"), ON_A_SERVER)],
                         value=ON_A_SERVER if s.remote else ON_THIS_MACHINE, label=t("engine_where"),
                         elem_id="engine-where")
        with gr.Group(visible=bool(s.remote)) as server_fields:
            url = gr.Textbox(s.remote, label=t("engine_url"), placeholder="http://127.0.0.1:8000/v1",
                             elem_id="engine-url")
            key = gr.Textbox("", label=t("engine_key"), type="password", elem_id="engine-key",
                             visible=not s.remote_key)
            with gr.Row(visible=bool(s.remote_key), elem_id="engine-key-set") as key_set:
                safe_markdown(t("engine_key_set"))
                replace_key = gr.Button(t("engine_key_replace"), size="sm", scale=0, min_width=120,
                                        elem_id="engine-key-replace")
                clear_key = gr.Button(t("engine_key_clear"), size="sm", scale=0, min_width=120,
                                      elem_id="engine-key-clear")
            model = gr.Dropdown(choices=[s.remote_model] if s.remote_model else [], value=s.remote_model or None,
                                allow_custom_value=True, label=t("engine_model"), elem_id="engine-model")
            test_btn = gr.Button(t("engine_test"), elem_id="engine-test")
        parallel = gr.Number(s.parallel, label=t("engine_parallel"), precision=0, minimum=0, elem_id="engine-parallel")
        use_btn = gr.Button(t("engine_use"), variant="primary", elem_id="engine-use")
        status = safe_markdown("", elem_id="engine-status")

    def opened():
        """The fields as the settings now in use say."""
        now = services.settings
        return (ON_A_SERVER if now.remote else ON_THIS_MACHINE, gr.update(visible=bool(now.remote)), now.remote,
                *key_fields(bool(now.remote_key)), now.remote_model or None, now.parallel)

    def notice(request: gr.Request):
        return engine_notice(services, language_of(request))

    def test(url_text, key_text, request: gr.Request):
        report, names = connection_report(url_text, key_to_use(services.settings, url_text, key_text),
                                          language_of(request))
        return report, gr.update(choices=names) if names else gr.skip()

    def use(where_choice, url_text, key_text, model_name, width, request: gr.Request):
        remote = (url_text or "").strip() if where_choice == ON_A_SERVER else ""
        try:
            if where_choice == ON_A_SERVER and not remote:
                raise UserError(say(request, "engine_give_url"))
            services.save_settings(replace(services.settings, remote=remote,
                                           remote_key=key_to_use(services.settings, remote or services.settings.remote, key_text),
                                           remote_model=(model_name or "").strip(), parallel=int(width or 0)))
        except UserError as exc:
            return say(request, "engine_not_changed", message=exc), gr.skip(), gr.skip()
        saved = say(request, "settings_saved", model_line=engine_notice(services, language_of(request)))
        return saved, *key_fields(bool(services.settings.remote_key))

    def clear(request: gr.Request):
        try:
            services.save_settings(replace(services.settings, remote_key=""))
        except UserError as exc:
            return say(request, "engine_not_changed", message=exc), gr.skip(), gr.skip()
        return say(request, "engine_key_cleared"), *key_fields(False)

    gr.on(None, opened, None, [where, server_fields, url, key, key_set, model, parallel])  # on load
    in_page_language(notice, None, status)
    where.change(lambda choice: gr.update(visible=choice == ON_A_SERVER), where, server_fields)
    replace_key.click(lambda: (gr.update(value="", visible=True), gr.update(visible=False)), None, [key, key_set])
    clear_key.click(clear, None, [status, key, key_set], concurrency_id="llm", concurrency_limit=1)
    test_btn.click(test, [url, key], [status, model])
    use_btn.click(use, [where, url, key, model, parallel], [status, key, key_set], concurrency_id="llm",
                  concurrency_limit=1)
