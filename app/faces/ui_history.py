"""The history in the sidebar: search hits that open their message, "More" conversations, export
(one conversation or all, JSON or Markdown, as a download) and import (a drop zone), and the
‹ 2/3 › version switch on messages that were edited or retried.

Gradio's Chatbot cannot hold components inside a bubble, so the page does small things in
JavaScript (`PAGE_JS`): it draws the ‹ › buttons into the bubbles from a map the server writes
(`#versions-map`: the row id of each bubble and the versions of those that have some); a click
on anything marked `data-pick` (a ‹ ›, a search hit), on "show earlier messages" (`chat_window`) or on
the ✕ of a queued message (`chat_view`) writes "version:ID", "open:ID", "earlier:ID" or "takeback:ID"
into the hidden `#history-pick` box, whose change runs `pick` here; "Copy conversation" copies the
text the map gives (the messages without the page's notes) instead of the bubbles; when the
conversation list or the search changes, it presses the hidden `#more-check`, which shows "More"
only while the list leaves conversations out. Layout and wiring only: the history does the work.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app.base.errors import UserError
from app.faces import locale_text
from app.faces.chat_view import SIDEBAR_PAGE, ChatUI, titled
from app.faces.i18n import in_page_language, language_of, say, t, words
from app.faces.safe_markdown import safe_markdown
from app.faces.temp_files import TabFiles, file_name, forget_upload
from app.services.exchange import export_json, export_markdown, import_files

PAGE_JS = """() => {
  const state = window.nemoHistory = {focus: null};
  const pick = (value) => {
    const box = document.querySelector("#history-pick textarea");
    if (!box) return;
    box.value = value + " " + Date.now();  // a new value each time: the same pick twice is a change too
    box.dispatchEvent(new Event("input", {bubbles: true}));
  };
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-pick], #chatbot button.show-earlier, #chatbot button.take-back");  // bubbles keep no data-*
    if (!target || target.disabled) return;
    event.preventDefault();
    const value = target.dataset.pick || target.value;
    if (value.startsWith("open:")) state.focus = Number(value.slice(5));
    pick(value);
  });
  const button = (text, label, target) => {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = text; b.setAttribute("aria-label", label);
    if (target) b.dataset.pick = "version:" + target; else b.disabled = true;
    return b;
  };
  const decorate = () => {
    const holder = document.querySelector("#versions-map .versions-data");
    let map = {};
    try { map = JSON.parse(holder ? holder.textContent : "{}"); } catch (e) { return; }
    const bubbles = document.querySelectorAll("#chatbot [data-testid=user], #chatbot [data-testid=bot]");
    const same = bubbles.length === (map.ids || []).length;  // else the map is of the chat shown before
    const versions = same ? map.versions || {} : {}, labels = map.labels || {};
    bubbles.forEach((bubble, i) => {
      const v = versions[i], key = v ? [...v, labels.previous, labels.next].join(",") : "";  // another language: redrawn
      const bar = bubble.querySelector(":scope > .nemo-versions");
      if ((bar ? bar.dataset.key : "") === key) return;
      if (bar) bar.remove();
      if (!v) return;
      const [at, of, previous, next] = v;
      const group = document.createElement("div");
      group.className = "nemo-versions"; group.dataset.key = key;
      group.setAttribute("role", "group"); group.setAttribute("aria-label", labels.group || "");
      const where = document.createElement("span");
      where.textContent = at + "/" + of;
      group.append(button("‹", labels.previous || "", previous), where, button("›", labels.next || "", next));
      bubble.appendChild(group);
    });
    const at = state.focus === null ? -1 : (map.ids || []).indexOf(state.focus);
    if (at >= 0 && same) {
      state.focus = null;
      const found = bubbles[at].closest(".message") || bubbles[at];
      found.classList.add("nemo-found");
      for (const wait of [0, 300, 1000]) {  // the Chatbot scrolls to its end as it settles: scroll after it
        setTimeout(() => found.scrollIntoView({block: "center"}), wait);
      }
      setTimeout(() => found.classList.remove("nemo-found"), 4000);
    }
  };
  document.addEventListener("click", (event) => {  // "Copy conversation": the messages, not the page's notes
    const button = event.target.closest && event.target.closest(
      "#chatbot button[aria-label='Copy conversation'], #chatbot button[aria-label='Copied conversation']");
    const holder = document.querySelector("#versions-map .versions-data");
    if (!button || !holder || !navigator.clipboard) return;
    let map = {};
    try { map = JSON.parse(holder.textContent); } catch (e) { return; }
    const bubbles = document.querySelectorAll("#chatbot [data-testid=user], #chatbot [data-testid=bot]");
    if (typeof map.copy !== "string" || bubbles.length !== (map.ids || []).length) return;  // the map of another chat
    event.preventDefault(); event.stopPropagation();
    navigator.clipboard.writeText(map.copy);
  }, true);
  let listed = null;
  const checkMore = () => {  // the list or the search changed: the server says whether "More" has more
    const list = document.querySelector("#conversation-list"), search = document.querySelector("#search textarea");
    const key = (list ? list.innerText : "") + "\u0000" + (search ? search.value : "");
    const check = document.querySelector("#more-check");
    if (key === listed || !check) return;
    listed = key;
    check.click();
  };
  let planned = false;
  new MutationObserver(() => {
    if (planned) return;
    planned = true;
    requestAnimationFrame(() => { planned = false; decorate(); checkMore(); });
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


@dataclass
class SidebarParts:
    """What the history puts in the sidebar (`history_sidebar`, `more_button`, `exchange_panel`)."""

    hits: gr.HTML
    pick: gr.Textbox
    versions: gr.HTML
    more: gr.Button | None = None
    more_check: gr.Button | None = None
    exchange: ExchangeParts | None = None


@dataclass
class ExchangeParts:
    kind: gr.Radio
    one: gr.Button
    every: gr.Button
    download: gr.File
    dropped: gr.File
    status: gr.Markdown


@dataclass
class ChatParts:
    """What the chat page gives: its view outputs and how it fills them (`shown`, `sidebar`)."""

    view: list
    shown: Callable
    sidebar: Callable
    conversation: object
    message_ids: object
    conversations: object
    search: object
    status_line: object  # the line under the chat: it changes when a reply starts and when it ends


def highlighted(snippet: str, query: str) -> str:
    """The snippet as safe HTML, each match of `query` (any case) in <mark>."""
    parts = re.split(f"({re.escape(query.strip())})", snippet, flags=re.IGNORECASE) if query.strip() else [snippet]
    return "".join(f"<mark>{html.escape(p)}</mark>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def hits_html(ui: ChatUI, query: str, request: gr.Request) -> str:
    """Search hits as buttons (conversation title, snippet with the match marked) that open their message."""
    if not query.strip():
        return ""
    hits = ui.history.search(query)
    if not hits:
        return f'<p class="no-hits">{html.escape(say(request, "history_no_hits", query=query.strip()))}</p>'
    items = [f'<li><button type="button" class="hit" data-pick="open:{h.message_id}">'
             f'<span class="hit-title">{html.escape(titled(h.conversation_title, language_of(request)))}</span>'
             f'<span class="hit-snippet">{highlighted(h.snippet, query)}</span></button></li>' for h in hits]
    return f'<ul class="hits" aria-label="{html.escape(say(request, "history_hits"))}">{"".join(items)}</ul>'


def copy_text(ui: ChatUI, conversation_id: int | None, ids: list) -> str:
    """What "Copy conversation" copies: the questions and replies shown, as Gradio writes them
    ("role: text"), without what the page adds to them (a reply's "■ stopped", waiting lines, notes)."""
    rows = {r["id"]: r for r in ui.history.messages(conversation_id)} if conversation_id is not None else {}
    shown = [rows[i] for i in ids or [] if i in rows and rows[i]["role"] in ("user", "assistant")]
    return "\n\n".join(f'{r["role"]}: {r["content"]}' for r in shown)


def versions_map(ui: ChatUI, conversation_id: int | None, ids: list, request: gr.Request) -> str:
    """The map the page draws the ‹ › buttons from: each bubble's row id, and for those with
    versions [which, of how many, previous id, next id]; and what "Copy conversation" copies."""
    groups = ui.history.version_groups(conversation_id) if conversation_id is not None else {}
    versions = {}
    for index, message_id in enumerate(ids or []):
        turn = groups.get(message_id)
        if turn:
            at = turn.index(message_id)
            versions[index] = [at + 1, len(turn), turn[at - 1] if at else None,
                               turn[at + 1] if at + 1 < len(turn) else None]
    labels = {key: say(request, f"history_version_{key}") for key in ("group", "previous", "next")}
    data = json.dumps({"ids": ids or [], "versions": versions, "labels": labels,
                       "copy": copy_text(ui, conversation_id, ids)})
    return f'<div class="versions-data">{html.escape(data)}</div>'


def history_sidebar() -> SidebarParts:
    """The search hits and the hidden parts of the page script: call in the sidebar, under the
    search box; then `more_button` under the list and `exchange_panel` at the end."""
    hits = gr.HTML("", elem_id="search-hits", padding=False)
    pick = gr.Textbox(visible="hidden", elem_id="history-pick", show_label=False, container=False)
    versions = gr.HTML("", visible="hidden", elem_id="versions-map")
    return SidebarParts(hits, pick, versions)


def more_button(parts: SidebarParts) -> None:
    """ "More conversations", shown only while the list leaves some out (the page script asks)."""
    parts.more = gr.Button(t("history_more"), size="sm", elem_id="more-conversations", visible=False)
    parts.more_check = gr.Button(visible="hidden", elem_id="more-check")


def exchange_panel(parts: SidebarParts) -> None:
    """Export (this conversation or all, JSON or Markdown, as a download) and import by drop."""
    with gr.Accordion(t("history_export_import"), open=False, elem_id="exchange-panel"):
        kind = gr.Radio([(t("history_format_json"), "json"), (t("history_format_markdown"), "markdown")], value="json", label=t("history_format"),
                        elem_id="export-format")
        with gr.Row():
            one = gr.Button(t("history_export_one"), size="sm", elem_id="export-one")
            every = gr.Button(t("history_export_all"), size="sm", elem_id="export-all")
        download = gr.File(label=t("history_download"), visible=False, interactive=False, elem_id="export-file")
        dropped = gr.File(label=t("history_import_drop"), file_count="multiple", file_types=[".json"],
                          elem_id="import-drop", height=120)
        status = safe_markdown("", elem_id="exchange-status")
    parts.exchange = ExchangeParts(kind, one, every, download, dropped, status)


def wire_exchange(ui: ChatUI, files: TabFiles, max_file_mb: int, parts: ExchangeParts, chat: ChatParts) -> None:
    """Export to a download; import what is dropped, then delete the upload and refresh the list."""

    def export(fmt: str, conversation_id, whole: bool, request: gr.Request):
        if not whole and conversation_id is None:
            return gr.update(visible=False), say(request, "common_warning", message=say(request, "sidebar_open_first"))
        ids, language = (None if whole else [conversation_id]), language_of(request)
        if fmt == "markdown":  # the file's words in the page's language, values not isolated
            content, suffix = export_markdown(ui.history, ids, lambda said: locale_text.words(language, said)), ".md"
        else:
            content, suffix = json.dumps(export_json(ui.history, ids), ensure_ascii=False, indent=1), ".json"
        name = file_name("nemo-chat history" if whole else ui.title(conversation_id, language), suffix)
        path = files.write(request.session_hash, name, content)
        count = ui.history.count_conversations() if whole else 1
        return gr.update(value=path, visible=True), say(request, "history_exported", count=count)

    def take(paths, query, conversation_id, request: gr.Request):
        paths = [Path(p if isinstance(p, str) else p.name) for p in paths or []]
        if not paths:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            too_big = [p.name for p in paths if p.stat().st_size > max_file_mb * 2**20]
            if too_big:
                raise UserError(say(request, "history_too_big", name=too_big[0], mb=max_file_mb))
            done = import_files(ui.history, paths)
        except UserError as exc:
            return say(request, "common_warning", message=exc), None, gr.skip()
        finally:
            for path in paths:
                forget_upload(path)  # in SQLite now (or refused): the upload is not kept
        line = say(request, "history_imported", conversations=done.conversations, messages=done.messages,
                   skipped=done.skipped)
        notes = [words(language_of(request), note) for note in done.notes]
        return " ".join([line, *notes]), None, chat.sidebar(request, query, conversation_id)

    def export_one(fmt: str, conversation_id, request: gr.Request):
        return export(fmt, conversation_id, False, request)

    def export_all(fmt: str, conversation_id, request: gr.Request):
        return export(fmt, conversation_id, True, request)

    parts.one.click(export_one, [parts.kind, chat.conversation], [parts.download, parts.status])
    parts.every.click(export_all, [parts.kind, chat.conversation], [parts.download, parts.status])
    parts.dropped.upload(take, [parts.dropped, chat.search, chat.conversation],
                         [parts.status, parts.dropped, chat.conversations])


def wire_history(ui: ChatUI, files: TabFiles, max_file_mb: int, sidebar: SidebarParts, chat: ChatParts) -> None:
    """Search hits, "More", version switching, opening a hit, export and import; the page script."""

    def pick(value: str, query: str, conversation_id, request: gr.Request):
        """ "version:ID" (‹ ›), "open:ID" (a search hit), "earlier:CONVERSATION" (show earlier messages)
        or "takeback:ID" (the ✕ of a queued message)."""
        kind, _, number = (value or "").split(" ")[0].partition(":")
        try:
            if kind == "earlier":
                ui.windows.widen(int(number))
                return [*chat.shown(request, int(number)), gr.skip()]
            if kind == "takeback":
                taken = ui.replies.take_back(request.session_hash, int(number))
                return [*chat.shown(request, conversation_id, "" if taken else say(request, "chat_take_back_late")),
                        gr.skip()]
            row = ui.history.message(int(number))
        except (ValueError, UserError):
            return [*chat.shown(request, conversation_id, say(request, "history_message_gone")), gr.skip()]
        cid = row["conversation_id"]
        branch = [m["id"] for m in ui.history.messages(cid)]
        if kind == "version" or row["id"] not in branch:  # a hit on another branch: show that branch
            ui.history.show_version(row["id"])
            branch = [m["id"] for m in ui.history.messages(cid)]
        if kind == "open":  # far up a long conversation: draw down to it
            ui.windows.reach(cid, len(branch) - branch.index(row["id"]) + 1)
        return [*chat.shown(request, cid), chat.sidebar(request, query, cid)]

    def more(query: str, conversation_id, request: gr.Request):
        ui.listed[request.session_hash] = ui.listed.get(request.session_hash, SIDEBAR_PAGE) + SIDEBAR_PAGE
        return chat.sidebar(request, query, conversation_id)

    def more_shown(query: str, request: gr.Request):
        listed = ui.listed.get(request.session_hash, SIDEBAR_PAGE)
        return gr.update(visible=not (query or "").strip() and ui.history.count_conversations() > listed)

    def found(query: str, request: gr.Request) -> str:
        return hits_html(ui, query or "", request)

    def versions(conversation_id, ids: list, request: gr.Request) -> str:
        return versions_map(ui, conversation_id, ids, request)

    latest = {"trigger_mode": "always_last", "concurrency_limit": None, "show_progress": "hidden"}  # in order
    chat.search.change(found, chat.search, sidebar.hits, **latest)
    sidebar.pick.change(pick, [sidebar.pick, chat.search, chat.conversation], [*chat.view, chat.conversations])
    sidebar.more.click(more, [chat.search, chat.conversation], chat.conversations)
    sidebar.more_check.click(more_shown, chat.search, sidebar.more, queue=False, trigger_mode="always_last")
    gr.on([chat.message_ids.change, chat.status_line.change], versions,  # a reply ended: its final text
          [chat.conversation, chat.message_ids], sidebar.versions, **latest)
    in_page_language(found, chat.search, sidebar.hits)
    in_page_language(versions, [chat.conversation, chat.message_ids], sidebar.versions)  # the ‹ ›'s names
    wire_exchange(ui, files, max_file_mb, sidebar.exchange, chat)
    gr.on(None, None, None, None, js=PAGE_JS)
