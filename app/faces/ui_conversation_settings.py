"""The "This conversation" panel of the Chat tab: the open conversation's own system prompt,
temperature and max reply tokens (empty: the defaults from Settings), and Pin / Unpin, which keeps
it at the top of the sidebar. Layout and wiring only; the history stores them and the chat service
uses them (`ChatService.settings_for`)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.base.errors import UserError
from app.faces.chat_view import ChatUI
from app.faces.i18n import in_page_language, say, t
from app.faces.safe_markdown import safe_markdown
from app.faces.ui_history import ChatParts


@dataclass
class PanelParts:
    system_prompt: gr.Textbox
    temperature: gr.Textbox
    max_tokens: gr.Textbox
    save: gr.Button
    pin: gr.Button
    status: gr.Markdown


def conversation_panel() -> PanelParts:
    """The panel, closed, where it is built (under the message box)."""
    with gr.Accordion(t("conv_panel"), open=False, elem_id="conversation-panel"):
        system_prompt = gr.Textbox(label=t("conv_system_prompt"), placeholder=t("conv_default_hint"), lines=2,
                                   max_lines=8, elem_id="conv-system-prompt")
        with gr.Row():
            temperature = gr.Textbox(label=t("conv_temperature"), placeholder=t("conv_default_hint"),
                                     elem_id="conv-temperature")
            max_tokens = gr.Textbox(label=t("conv_max_tokens"), placeholder=t("conv_default_hint"),
                                    elem_id="conv-max-tokens")
        with gr.Row():
            save = gr.Button(t("conv_save"), size="sm", variant="primary", elem_id="conv-save")
            pin = gr.Button(t("conv_pin"), size="sm", elem_id="conv-pin")
        status = safe_markdown("", elem_id="conv-status")
    return PanelParts(system_prompt, temperature, max_tokens, save, pin, status)


def _number(value: str, kind: type, request: gr.Request):
    """A typed number (a comma taken as the decimal point), or None for an empty field."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return kind(value.replace(",", "."))
    except ValueError:
        raise UserError(say(request, "conv_not_a_number", value=value)) from None


def wire_conversation_panel(ui: ChatUI, panel: PanelParts, chat: ChatParts) -> None:
    """Fill the panel when another conversation opens; Save and Pin / Unpin."""

    def pin_label(cid, request: gr.Request) -> str:
        pinned = cid is not None and ui.history.conversation(cid)["pinned_at"]
        return say(request, "conv_unpin" if pinned else "conv_pin")

    def fill(cid, request: gr.Request):
        own = ui.history.own_settings(cid) if cid is not None else {}
        shown = ["" if own.get(name) is None else str(own[name]) for name in ("system_prompt", "temperature", "max_tokens")]
        return [*shown, pin_label(cid, request), ""]

    def save(cid, system_prompt: str, temperature: str, max_tokens: str, request: gr.Request):
        try:
            if cid is None:
                raise UserError(say(request, "sidebar_open_first"))
            ui.history.set_own_settings(cid, system_prompt, _number(temperature, float, request),
                                        _number(max_tokens, int, request))
        except UserError as exc:
            return say(request, "common_warning", message=exc)
        return say(request, "conv_saved")

    def pin(cid, query: str, request: gr.Request):
        if cid is None:
            return gr.skip(), gr.skip(), say(request, "common_warning", message=say(request, "sidebar_open_first"))
        pinned = not ui.history.conversation(cid)["pinned_at"]
        ui.history.pin(cid, pinned)
        return (pin_label(cid, request), chat.sidebar(request, query, cid),
                say(request, "conv_pinned" if pinned else "conv_unpinned"))

    in_page_language(pin_label, chat.conversation, panel.pin)
    fields = [panel.system_prompt, panel.temperature, panel.max_tokens]
    chat.conversation.change(fill, chat.conversation, [*fields, panel.pin, panel.status])
    quick = dict(show_progress="hidden")  # instant: the list and the fields are not greyed out meanwhile
    panel.save.click(save, [chat.conversation, *fields], panel.status, **quick)
    panel.pin.click(pin, [chat.conversation, chat.search], [panel.pin, chat.conversations, panel.status], **quick)
