"""The Gradio face: layout and event wiring only; every action calls a plain service."""


import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is first imported (ui_* modules do)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import json  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from app.base.config import models_dir  # noqa: E402
from app.base.errors import UserError  # noqa: E402
from app.base.jobs import Job  # noqa: E402
from app.documents.reading import KINDS as DOCUMENT_KINDS  # noqa: E402
from app.engine.catalog import available_models, resolve_model  # noqa: E402
from app.faces.temp_files import TabFiles, clean_private_tmp, forget_upload  # noqa: E402
from app.faces.ui_convert import convert_panel  # noqa: E402
from app.faces.ui_documents import documents_tab  # noqa: E402
from app.faces.ui_models import model_section  # noqa: E402
from app.faces.ui_translate import translate_tab  # noqa: E402
from app.faces.web_guard import check_bind, guard_middleware, is_loopback, remote_images_as_links  # noqa: E402
from app.services.root import Services  # noqa: E402

CSS_PATH = Path(__file__).resolve().parent.parent / "assets" / "app.css"
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False},
         {"left": "\\(", "right": "\\)", "display": False}, {"left": "\\[", "right": "\\]", "display": True}]
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"]
TOOL_CHOICES = [("Date and time", "current_datetime"), ("Calculator", "calculator"),
                ("Search my conversations", "search_conversations")]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Consolas", "monospace"]


class ChatUI:
    """What the Chat tab shows, made from the services that all browser tabs share."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def history(self):
        return self.services.history

    @property
    def settings(self):
        return self.services.settings

    # -- helpers that turn service data into what the widgets show ------------------------------
    def model_notice(self) -> str:
        try:
            path = resolve_model(self.settings.model)
        except UserError as exc:
            return f"⚠️ {exc}"
        return f"Model: **{path.name}** · context {self.settings.n_ctx:,} tokens"

    def conversation_choices(self, query: str = "") -> list[tuple[str, int]]:
        if query.strip():
            seen: dict[int, str] = {}
            for hit in self.history.search(query):
                seen.setdefault(hit.conversation_id, hit.conversation_title)
            return [(title, cid) for cid, title in seen.items()]
        return [(c["title"], c["id"]) for c in self.history.conversations()]

    def chat_messages(self, conversation_id: "int | None") -> tuple[list[dict], list[int]]:
        """Chatbot messages and their row ids; tool steps show as collapsible boxes."""
        if conversation_id is None:
            return [], []
        rows = self.history.messages(conversation_id)
        return [_chat_message(r) for r in rows], [r["id"] for r in rows]

    def meter(self, conversation_id: int | None, stats=None) -> str:
        """Token meter (conversation tokens / context) and the last reply's speed."""
        if conversation_id is None:
            return ""
        if stats is None:
            replies = [m for m in self.history.messages(conversation_id) if m["role"] == "assistant"]
            if not replies or not replies[-1]["prompt_tokens"]:
                return ""
            stats = replies[-1]
            used = (stats["prompt_tokens"] or 0) + (stats["completion_tokens"] or 0)
            speed, ttft = stats["tokens_per_s"] or 0, stats["ttft_s"] or 0
        else:
            used = stats.prompt_tokens + stats.completion_tokens
            speed, ttft = stats.tokens_per_s, stats.ttft_s
        return f"{used:,} / {self.settings.n_ctx:,} tokens · {speed:.1f} tok/s · first token {ttft:.2f} s"

    def follow(self, job: Job, conversation_id: "int | None", notice: str = ""):
        """(chatbot, ids, conversation, stats, notice) tuples while a reply job runs."""
        try:
            for _ in job.watch():
                update = job.latest
                if update is None:
                    continue
                conversation_id = update.conversation_id
                messages, ids = self.chat_messages(conversation_id)
                text = remote_images_as_links(update.text)  # as _chat_message shows saved ones
                if update.message_id in ids:
                    messages[ids.index(update.message_id)]["content"] = text
                elif text:
                    messages.append({"role": "assistant", "content": text})
                stats = self.meter(conversation_id, update.stats) if update.done else "…"
                if update.done and update.status == "stopped":
                    stats = "stopped · " + stats
                yield messages, ids, conversation_id, stats, notice
            job.result()  # a UserError of the reply becomes the notice line
        finally:
            job.stop()  # Stop, or the page went away: the reply ends and is saved


def _chat_message(row: dict) -> dict:
    """One saved row as a Chatbot message; images from other servers become links."""
    if row["role"] == "document":
        attached = json.loads(row["content"])
        message = {"role": "user", "content": attached["note"],
                   "metadata": {"title": f"Attached: {attached['title']}", "status": "done"}}
    elif row["role"] != "tool":
        message = {"role": row["role"], "content": row["content"]}
    else:
        step = json.loads(row["content"])
        arguments = json.dumps(step["arguments"], ensure_ascii=False)
        outcome = f"Error: {step['error']}" if step["error"] else f"```json\n{step['content']}\n```"
        message = {"role": "assistant", "content": outcome,
                   "metadata": {"title": f"Tool: {step['name']}({arguments})", "status": "done"}}
    message["content"] = remote_images_as_links(message["content"])
    if "metadata" in message:
        message["metadata"]["title"] = remote_images_as_links(message["metadata"]["title"])
    return message


def build_app(model: str | None = None, max_file_mb: int = 100, services: Services | None = None):
    """The Gradio Blocks app (not launched); `services` are built here unless given."""
    clean_private_tmp()  # uploads and downloads of an earlier run are gone
    import gradio as gr

    services = services or Services(model=model)
    ui = ChatUI(services)
    files = TabFiles()

    def reply_job(request: gr.Request, start_reply):
        """Run a reply as this browser tab's chat job (its Stop stops it)."""
        job = services.jobs.start(request.session_hash, "chat", lambda progress, cancel: start_reply(cancel, progress))
        return job

    def refresh_sidebar(query=""):
        return gr.update(choices=ui.conversation_choices(query))

    def guarded(start_stream):
        """Stream a reply; a UserError becomes the notice line, never a traceback."""
        try:
            yield from start_stream()
        except UserError as exc:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), f"⚠️ {exc}"

    def send(message, conversation_id, request: gr.Request):
        text = str((message or {}).get("text") or "")
        files = [f if isinstance(f, str) else f["path"] for f in (message or {}).get("files") or []]

        def start():
            cid, notes = conversation_id, []
            for path in files:  # "chat about this document": attach first, then ask
                try:
                    cid, note = services.chat.attach(cid, path, text or "overview", ui.settings)
                finally:
                    forget_upload(path)  # read into SQLite (or refused): the upload is not kept
                notes.append(note)
            if not text.strip():
                if not files:
                    raise UserError("the message is empty")
                return iter([(*ui.chat_messages(cid), cid, ui.meter(cid), " ".join(notes))])
            job = reply_job(request, lambda cancel, progress: services.chat.send(cid, text, ui.settings, cancel, progress))
            return ui.follow(job, cid, " ".join(notes))
        yield from guarded(start)

    def retry(conversation_id, request: gr.Request):
        def start():
            if conversation_id is None:
                raise UserError("nothing to retry yet")
            job = reply_job(request, lambda cancel, _: services.chat.retry(conversation_id, ui.settings, cancel))
            return ui.follow(job, conversation_id)
        yield from guarded(start)

    def edit(conversation_id, ids, edit: gr.EditData, request: gr.Request):
        def start():
            if conversation_id is None or edit.index >= len(ids):
                raise UserError("that message can no longer be edited")
            text = edit.value if isinstance(edit.value, str) else str(edit.value)
            job = reply_job(request, lambda cancel, _: services.chat.edit(conversation_id, ids[edit.index], text,
                                                                           ui.settings, cancel))
            return ui.follow(job, conversation_id)
        yield from guarded(start)

    def open_conversation(conversation_id):
        messages, ids = ui.chat_messages(conversation_id)
        return messages, ids, conversation_id, ui.meter(conversation_id), ""

    def new_conversation():
        return [], [], None, "", "", gr.update(value=None)

    def rename(conversation_id, title, query):
        try:
            if conversation_id is None:
                raise UserError("open a conversation first")
            ui.history.rename(conversation_id, title)
        except UserError as exc:
            return gr.skip(), f"⚠️ {exc}"
        return refresh_sidebar(query), ""

    def delete(conversation_id, query):
        if conversation_id is not None:
            ui.history.delete_conversation(conversation_id)
        return (*new_conversation()[:5], refresh_sidebar(query))

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
        conversation = gr.State(None)
        message_ids = gr.State([])
        pending = gr.State(None)
        with gr.Sidebar(open=True):
            gr.Markdown("### nemo-chat")
            new_btn = gr.Button("+ New chat", variant="primary", elem_id="new-chat")
            search = gr.Textbox(placeholder="Search conversations…", show_label=False, elem_id="search")
            conversations = gr.Radio(choices=ui.conversation_choices(), label="Conversations",
                                     elem_id="conversation-list")
            with gr.Accordion("Rename or delete", open=False):
                title = gr.Textbox(label="New title", elem_id="rename-title")
                with gr.Row():
                    rename_btn = gr.Button("Rename", size="sm")
                    delete_btn = gr.Button("Delete", size="sm", variant="stop")
        with gr.Tab("Chat"):
            model_line = gr.Markdown(ui.model_notice(), elem_id="model-line")
            notice = gr.Markdown("", elem_id="notice")
            chatbot = gr.Chatbot(elem_id="chatbot", show_label=False, height="65vh", latex_delimiters=LATEX, editable="user",
                                 buttons=["copy", "copy_all"], placeholder="Ask anything. Everything stays on this machine.")
            stats = gr.Markdown("", elem_id="reply-stats")
            with gr.Row():
                box = gr.MultimodalTextbox(
                    placeholder="Message (Enter to send, Shift+Enter for a new line). Drop a document here to chat about it.",
                    show_label=False, scale=8, lines=2, max_lines=12, elem_id="message-box", autofocus=True,
                    file_count="multiple", file_types=list(DOCUMENT_KINDS), sources=["upload"])
                send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="stop")
        documents_tab(services, files, max_file_mb)
        translate_tab(services, files)
        with gr.Tab("Settings"):
            s = ui.settings
            model_name = gr.Dropdown(choices=available_models(), value=s.model or None, allow_custom_value=True,
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

        chat_outputs = [chatbot, message_ids, conversation, stats, notice]
        llm = {"concurrency_id": "llm", "concurrency_limit": 1}
        sent = [  # the box empties at once; the text travels in `pending`
            trigger(lambda message: (None, message), box, [box, pending], queue=False)
            .then(send, [pending, conversation], chat_outputs, **llm)
            for trigger in (box.submit, send_btn.click)
        ]
        for event in sent:
            event.then(refresh_sidebar, search, conversations)
        chatbot.retry(retry, [conversation], chat_outputs, **llm)
        chatbot.edit(edit, [conversation, message_ids], chat_outputs, **llm)
        def stop(request: gr.Request):
            services.jobs.stop(request.session_hash, "chat")

        # Stop cancels this browser tab's chat job: the engine stops within one token (or one batch
        # of prompt) and the reply ends by itself, saved and shown as stopped.
        stop_btn.click(stop, None, None, concurrency_limit=None)

        demo.load(lambda: (refresh_sidebar(), ui.model_notice()), None, [conversations, model_line])

        def tab_closed(request: gr.Request):
            """A browser tab went away: stop its jobs, delete the files made for it."""
            services.jobs.forget(request.session_hash)
            files.forget(request.session_hash)

        demo.unload(tab_closed)
        conversations.input(open_conversation, conversations, chat_outputs)
        new_btn.click(new_conversation, None, [*chat_outputs, conversations])
        search.change(refresh_sidebar, search, conversations)
        rename_btn.click(rename, [conversation, title, search], [conversations, notice])
        delete_btn.click(delete, [conversation, search], [*chat_outputs, conversations])
        save_btn.click(save, [model_name, n_ctx, n_gpu_layers, temperature, top_p, max_tokens, system_prompt, tools,
                              parse_timeout_s, parse_memory_mb, parse_max_pages],
                       [settings_status, model_line])
    demo.nemo = services  # tests reach the services through the app
    return demo, dict(theme=theme, css=CSS_PATH.read_text(encoding="utf-8"))


def launch(demo, style: dict, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False,
           block: bool = True, max_file_mb: int = 100, allow_hosts=(), token: str | None = None):
    """Serve privately: loopback by default, no share link, no monitoring, no extra paths, no SSR
    or file workers beside the app; every route behind `web_guard` (Host allow-list, token, CSP)."""
    return demo.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=False, inbrowser=open_browser,
        enable_monitoring=False, allowed_paths=[], max_file_size=f"{max_file_mb}mb",
        prevent_thread_lock=not block, quiet=True, footer_links=[], ssr_mode=False, num_workers=0,
        mcp_server=False, app_kwargs={"middleware": [guard_middleware(host, port, allow_hosts, token)]}, **style,
    )


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = True,
          allow_hosts=(), token: str | None = None) -> None:
    """The `ui` command: refuses a non-loopback bind without a token before loading anything."""
    check_bind(host, token)
    with Services(model=model) as services:
        demo, style = build_app(services=services)
        print(f"nemo-chat: serving on http://{host}:{port}", flush=True)
        if not is_loopback(host):
            print(f"nemo-chat: reachable from other machines on port {port}; every request needs the token "
                  "(user nemo, password = the token)", flush=True)
        launch(demo, style, host, port, open_browser, allow_hosts=allow_hosts, token=token)
