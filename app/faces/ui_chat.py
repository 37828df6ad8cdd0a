"""The sidebar (conversations: new, search, open, rename, delete with Undo) and the Chat tab (with
its "This conversation" panel, `ui_conversation_settings`).
Layout and wiring only: messages are posted and answered by the services (ChatService,
TabReplies), what is shown is made by `chat_view.ChatUI`.

Enter sends, Shift+Enter breaks the line, Escape stops the reply being written (messages queued
behind it are answered next); in a message being edited, Enter submits the edit and Escape cancels it. Chat events are not serialized by Gradio's queue: every tab's requests
wait for the model's first-come-first-served turns in the engine, so a tab that sends while another
tab's reply runs shows its message at once and how many are ahead, for as long as that reply runs.
"""


from dataclasses import dataclass

from app.base.errors import UserError
from app.documents.reading import KINDS as DOCUMENT_KINDS
from app.faces.chat_view import SIDEBAR_PAGE, ChatUI
from app.faces.i18n import in_page_language, language_of, say, t, words
from app.faces.safe_markdown import safe_markdown
from app.faces.temp_files import TabFiles, forget_upload
from app.faces.ui_conversation_settings import conversation_panel, wire_conversation_panel
from app.faces.ui_history import ChatParts, exchange_panel, history_sidebar, more_button, wire_history
from app.history import TRASH_KEEP_S

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False},
         {"left": "\\(", "right": "\\)", "display": False}, {"left": "\\[", "right": "\\]", "display": True}]
CHAT_KEYS = """() => {
  const editButtons = (box) => {  // the Chatbot's ✓ and ✕ of the message being edited, in that order
    const row = box.closest(".message-row");
    const panel = row && row.nextElementSibling;
    return panel && panel.classList.contains("message-buttons") ? panel.querySelectorAll("button") : [];
  };
  document.addEventListener("keydown", (event) => {  // in a message being edited: Enter submits, Escape cancels
    const box = event.target.closest && event.target.closest("#chatbot textarea.edit-textarea");
    if (!box || event.isComposing) return;
    const submit = event.key === "Enter" && !event.shiftKey, cancel = event.key === "Escape";
    const [yes, no] = editButtons(box);
    const button = submit ? yes : cancel ? no : null;
    if (!button || button.disabled) return;
    event.preventDefault(); event.stopPropagation(); button.click();
  }, true);
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    const stop = document.querySelector("#stop");
    if (stop && !stop.disabled) { event.preventDefault(); stop.click(); }
  });
}"""
FOCUS_BOX = "() => { document.querySelector('#message-box textarea')?.focus(); }"  # a new chat: type at once
CHAT_EVENT = dict(concurrency_limit=None, show_progress="hidden")  # the engine's turns do the waiting


@dataclass
class ChatPage:
    """The parts the rest of the page updates, and what to do when a browser tab goes away."""

    model_line: object
    conversations: object
    search: object
    tab_closed: object


def chat_page(ui: ChatUI, files: TabFiles, max_file_mb: int) -> ChatPage:
    """Build the sidebar and the Chat tab inside the current gr.Blocks and wire them (with the
    history's parts: search hits, More, versions, export and import, `ui_history`)."""
    import gradio as gr

    skip = gr.skip

    def empty_box():  # a fresh update each time: Gradio changes the dicts it is given
        return gr.update(value={"text": "", "files": []})

    conversation = gr.State(None)
    message_ids = gr.State([])
    trashed = gr.State([])
    with gr.Sidebar(open=True):
        safe_markdown("### nemo-chat")  # the app's name, the same in every language
        new_btn = gr.Button(t("sidebar_new_chat"), variant="primary", elem_id="new-chat")
        search = gr.Textbox(placeholder=t("sidebar_search_placeholder"), label=t("sidebar_search_placeholder"),
                            show_label=False, elem_id="search")
        history = history_sidebar()
        conversations = gr.Radio(choices=ui.conversation_choices(), label=t("sidebar_conversations"),
                                 elem_id="conversation-list")
        more_button(history)
        with gr.Row(visible=False, equal_height=True, elem_id="undo-bar") as undo_bar:
            undo_text = safe_markdown("", elem_id="undo-text")
            undo_btn = gr.Button(t("common_undo"), size="sm", scale=0, min_width=70, elem_id="undo")
        undo_timer = gr.Timer(TRASH_KEEP_S, active=False)
        with gr.Accordion(t("sidebar_rename_or_delete"), open=False, elem_id="rename-panel"):
            title = gr.Textbox(label=t("sidebar_title"), elem_id="rename-title")
            rename_status = safe_markdown("", elem_id="rename-status")
            with gr.Row():
                rename_btn = gr.Button(t("sidebar_rename"), size="sm", elem_id="rename")
                delete_btn = gr.Button(t("common_delete"), size="sm", variant="stop", elem_id="delete")
        exchange_panel(history)
    with gr.Tab(t("tab_chat")):
        model_line = safe_markdown("", elem_id="model-line")  # written on load, in the page's language
        notice = safe_markdown("", elem_id="notice")
        chatbot = gr.Chatbot(elem_id="chatbot", show_label=False, height="65vh", latex_delimiters=LATEX,
                             editable="user", buttons=["copy", "copy_all"],
                             placeholder=t("chat_placeholder"))
        stats = safe_markdown("", elem_id="reply-stats")
        with gr.Row(equal_height=True):
            box = gr.MultimodalTextbox(
                placeholder=t("chat_box_placeholder"), label=t("chat_box_label"), show_label=False, scale=9,
                lines=1, max_lines=12, elem_id="message-box", autofocus=True,
                file_count="multiple", file_types=list(DOCUMENT_KINDS), sources=["upload"])
            stop_btn = gr.Button(t("common_stop"), variant="stop", scale=1, min_width=90, elem_id="stop",
                                 interactive=False)
        panel = conversation_panel()

    view = [chatbot, message_ids, conversation, stats, notice, title]
    reply_outputs = [*view, box, stop_btn, conversations]

    def sidebar(request: gr.Request, query: str = "", selected=None):
        """The tab's conversation list, as long as "More" made it."""
        choices = ui.conversation_choices(query or "", ui.listed.get(request.session_hash, SIDEBAR_PAGE),
                                          language_of(request))
        return gr.update(choices=choices, value=selected if selected in {c for _, c in choices} else None)

    def searched(query: str, request: gr.Request):
        ui.listed.pop(request.session_hash, None)  # a new search lists its first page
        return sidebar(request, query)

    def shown(request: gr.Request, cid, notice_text: str = "", line: str | None = None,
              answering: bool = False) -> list:
        """The view outputs for conversation `cid`, which the tab of `request` now has open
        (`answering`: its last message was just sent to be answered)."""
        ui.viewing[request.session_hash] = cid
        language = language_of(request)
        messages, ids = ui.chat_messages(cid, language=language, answering=answering)
        return [messages, ids, cid, ui.meter(cid, language=language) if line is None else line, notice_text,
                ui.title(cid, language)]

    def stop_state(session: str):
        """Stop on while this tab has a reply being written or waiting (not while titles are written)."""
        return gr.update(interactive=ui.replies.answering(session))

    def follow(request: gr.Request, job, query: str):
        """Stream the tab's reply job into the conversation the tab has open (Stop turned off once
        its replies are done); then settle the view."""
        session, language = request.session_hash, language_of(request)
        line, problem, answering = "", skip(), True
        try:
            for messages, ids, cid, line in ui.follow(job, lambda: ui.viewing.get(session), language):
                now = ui.replies.answering(session)
                button, answering = skip() if now == answering else gr.update(interactive=now), now
                yield messages, ids, cid, line, skip(), skip(), skip(), button, skip()
        except UserError as exc:
            line, problem = "", say(request, "common_warning", message=exc)
        cid = ui.viewing.get(session)
        messages, ids = ui.chat_messages(cid, language=language)
        yield (messages, ids, cid, line, problem, ui.title(cid, language), skip(), stop_state(session),
               sidebar(request, query, cid))

    def send(message, conversation_id, query, request: gr.Request):
        session = request.session_hash
        text = str((message or {}).get("text") or "")
        paths = [f if isinstance(f, str) else f["path"] for f in (message or {}).get("files") or []]
        cid, notes, posted = conversation_id, [], None
        try:
            for path in paths:  # "chat about this document": attach first, then ask
                try:
                    cid, note = ui.services.chat.attach(cid, path, text or "overview", ui.settings)
                finally:
                    forget_upload(path)  # read into SQLite (or refused): the upload is not kept
                notes.append(words(language_of(request), note))
            if not text.strip() and not paths:
                raise UserError(say(request, "chat_message_empty"))
            if text.strip():
                cid, posted = ui.services.chat.post(cid, text, ui.settings)
        except UserError as exc:  # the typed text stays in the box; the files were read or refused
            yield (*shown(request, cid, say(request, "common_warning", message=exc)),
                   gr.update(value={"text": text, "files": []}),
                   skip(), sidebar(request, query, cid))
            return
        job = ui.replies.answer(session, posted, ui.settings) if posted else None
        yield (*shown(request, cid, " ".join(notes), "…" if posted else None, answering=job is not None), empty_box(),
               stop_state(session),
               sidebar(request, query, cid))
        if job is not None:
            yield from follow(request, job, query)

    def retry(conversation_id, query, request: gr.Request):
        session = request.session_hash
        if conversation_id is None:
            yield *shown(request, None, say(request, "chat_nothing_to_retry")), skip(), skip(), skip()
            return
        job = ui.replies.retry(session, conversation_id, ui.settings)
        yield *shown(request, conversation_id, "", "…", answering=job is not None), skip(), stop_state(session), skip()
        if job is not None:
            yield from follow(request, job, query)

    def edit(conversation_id, ids, change: gr.EditData, query, request: gr.Request):
        session = request.session_hash
        message_id = ids[change.index] if conversation_id is not None and change.index < len(ids) else None
        if message_id is None:
            yield *shown(request, conversation_id, say(request, "chat_edit_gone")), skip(), skip(), skip()
            return
        text = change.value if isinstance(change.value, str) else str(change.value)
        job = ui.replies.edit(session, conversation_id, message_id, text, ui.settings)
        yield *shown(request, conversation_id, "", "…", answering=job is not None), skip(), stop_state(session), skip()
        if job is not None:
            yield from follow(request, job, query)

    def stop(request: gr.Request):
        ui.replies.stop(request.session_hash)  # the reply ends within a token, saved and marked stopped;
        # the messages queued behind it are answered next

    def answer_approval(choice: gr.SelectData, request: gr.Request):
        """Allow once, Always or Deny for the tool call this tab's reply waits on."""
        job = ui.replies.running(request.session_hash)
        pending = getattr(job.latest, "approval", None) if job is not None else None
        if pending is not None:
            pending.decide(str(choice.value))

    def open_conversation(cid, request: gr.Request):
        return [*shown(request, cid), ""]

    def new_conversation(request: gr.Request):
        return [*shown(request, None), "", gr.update(value=None)]

    def rename(cid, new_title, query, request: gr.Request):
        try:
            if cid is None:
                raise UserError(say(request, "sidebar_open_first"))
            ui.history.rename(cid, new_title)
        except UserError as exc:
            return skip(), say(request, "common_warning", message=exc)
        return sidebar(request, query, cid), say(request, "sidebar_renamed")

    def delete(cid, gone, query, request: gr.Request):
        if cid is None:
            return [*[skip()] * len(view), say(request, "common_warning", message=say(request, "sidebar_open_first")),
                    *[skip()] * 5]
        name = ui.title(cid, language_of(request))
        ui.history.trash_conversation(cid)
        return [*shown(request, None), "", sidebar(request, query), gr.update(visible=True),
                say(request, "sidebar_deleted", title=name), gr.Timer(active=True), [*gone, cid]]

    def undo(gone, query, request: gr.Request):
        for cid in gone:
            ui.history.restore_conversation(cid)
        cid = gone[-1] if gone else None
        return [*shown(request, cid), sidebar(request, query, cid), gr.update(visible=False),
                gr.Timer(active=False), []]

    def expire(gone):
        for cid in gone:
            ui.history.purge(cid)
        return gr.update(visible=False), gr.Timer(active=False), []

    def page_words(cid, request: gr.Request):
        """The open conversation's notes and meter in the page's language (left alone while a reply
        is written into it: the reply's own updates follow)."""
        if cid is None or ui.replies.running(request.session_hash) is not None:
            return [skip()] * len(view)
        return shown(request, cid)

    def tab_closed(request: gr.Request):
        ui.replies.close(request.session_hash)
        ui.viewing.pop(request.session_hash, None)
        ui.listed.pop(request.session_hash, None)

    box.submit(send, [box, conversation, search], reply_outputs, trigger_mode="multiple", **CHAT_EVENT)
    chatbot.retry(retry, [conversation, search], reply_outputs, **CHAT_EVENT)
    chatbot.edit(edit, [conversation, message_ids, search], reply_outputs, **CHAT_EVENT)
    stop_btn.click(stop, None, None, queue=False)
    chatbot.option_select(answer_approval, None, None, queue=False)
    new_btn.click(new_conversation, None, [*view, rename_status, conversations]).then(None, js=FOCUS_BOX)
    conversations.input(open_conversation, conversations, [*view, rename_status])
    in_page_language(page_words, conversation, view)
    search.change(searched, search, conversations)
    for rename_event in (rename_btn.click, title.submit):
        rename_event(rename, [conversation, title, search], [conversations, rename_status])
    for delete_event in (delete_btn.click, chatbot.clear):  # the chat's trash icon deletes too, with Undo
        delete_event(delete, [conversation, trashed, search],
                     [*view, rename_status, conversations, undo_bar, undo_text, undo_timer, trashed])
    undo_btn.click(undo, [trashed, search], [*view, conversations, undo_bar, undo_timer, trashed])
    undo_timer.tick(expire, trashed, [undo_bar, undo_timer, trashed])
    parts = ChatParts(view, shown, sidebar, conversation, message_ids, conversations, search, stats)
    wire_history(ui, files, max_file_mb, history, parts)
    wire_conversation_panel(ui, panel, parts)
    return ChatPage(model_line, conversations, search, tab_closed)
