"""The Documents tab's questions: choose one or several stored documents, ask (Quick or Whole
document), watch the answer stream with its progress (chunks read of the total, tokens, time left),
read its sources, open one to see the passage with the quote marked, continue the answer as a chat.
Layout, wiring and words only; the work is `Services.ask` (app/services/retrieval.py)."""

import html

from app.base.errors import UserError
from app.faces.i18n import language_of, say, t, text, words
from app.faces.progress_text import call_text, duration_text, stage_text
from app.faces.safe_markdown import safe_markdown
from app.services import retrieval
from app.services.citations import normalized
from app.services.retrieval import AskResult, AskUpdate, Source

QUOTE_SHOWN = 140  # characters of a quote in a source's line


def ask_line(update: AskUpdate, language: str = "en") -> str:
    """'reading the documents · 12 / 40 chunks read · 3,000 / 10,000 tokens · now writing: 20 tokens
    (at most 160) · about 1 min left', in `language`."""
    p = update.progress
    parts = [stage_text(p.what or retrieval.FINDING, language)]
    if update.result is None or update.result.whole:
        parts.append(text(language, "ask_chunks", read=f"{p.done:,}", total=f"{p.total:,}"))
    parts.append(text(language, "ask_tokens", read=f"{update.tokens_read:,}", total=f"{update.tokens_total:,}"))
    if update.call is not None:
        parts.append(text(language, "progress_now", call=call_text(update.call, language)))
    if update.eta_s is not None and update.result is None:
        parts.append(text(language, "progress_left", time=duration_text(update.eta_s, language)))
    return " · ".join(parts)


def progress_html(update: AskUpdate, language: str = "en") -> str:
    p, result = update.progress, update.result
    hint = " " + text(language, "ask_resume_hint") if result is not None and result.stopped and result.whole else ""
    return (f"<div class='doc-progress'><progress value='{p.done}' max='{max(p.total, 1)}'></progress> "
            f"<span>{html.escape(ask_line(update, language) + hint)}</span></div>")


def where(source: Source, language: str = "en") -> str:
    """'ledger.pdf, p. 27', 'ledger.pdf, pp. 27-29', 'notes.md, § Costs' or 'notes.txt'."""
    return words(language, source.where())


def source_label(source: Source, language: str = "en") -> str:
    """'[1] ledger.pdf, p. 27: “the quote”' ('· passage' when the quote is the passage's own sentence)."""
    quote = source.quote if len(source.quote) <= QUOTE_SHOWN else source.quote[:QUOTE_SHOWN - 1] + "…"
    number = f"[{source.number}] " if source.number else ""
    mark = "" if source.verified else f" · {text(language, 'ask_passage_mark')}"
    return f"{number}{where(source, language)}: “{quote}”{mark}"


def answer_markdown(result: AskResult, language: str = "en") -> str:
    if not result.found:
        return text(language, "ask_nothing_found")
    return result.answer


def passage_html(passage: str, source: Source, language: str = "en") -> str:
    """The cited chunk (spaces normalized) with the quote marked."""
    body = normalized(passage)
    quote = normalized(source.quote)
    at = body.find(quote) if quote else -1
    shown = html.escape(body) if at < 0 else (html.escape(body[:at]) + "<mark>" + html.escape(quote) + "</mark>"
                                              + html.escape(body[at + len(quote):]))
    note = "" if source.verified else f" <em>({html.escape(text(language, 'ask_passage_mark'))})</em>"
    return (f"<div class='ask-passage'><strong>{html.escape(where(source, language))}</strong>{note}"
            f"<blockquote>{shown}</blockquote></div>")


def chat_text(question: str, result: AskResult, language: str = "en") -> str:
    """The answer as a conversation's first reply: the answer, then its sources."""
    lines = [answer_markdown(result, language)]
    if result.sources:
        lines.append(f"**{text(language, 'ask_sources')}**")
        lines += [f"- {source_label(s, language)}" for s in result.sources]
    return "\n\n".join(lines)


def ask_panel(services, documents_choices):
    """Build the question controls inside the current gr.Blocks; returns the document picker, whose
    choices (`documents_choices(language)`) the library keeps up to date."""
    import gradio as gr

    def run_ask(ids, question, mode, request: gr.Request):
        language = language_of(request)
        if not ids:
            yield say(request, "ask_choose_first"), gr.skip(), gr.skip(), gr.skip(), None
            return
        whole = mode == "whole"
        job = services.jobs.start(request.session_hash, "ask",
                                  lambda progress, cancel: services.ask(list(ids), question, whole, cancel))
        yield "", "", gr.update(choices=[], value=None), "", None
        try:
            for _ in job.watch():
                update = job.latest
                if update is not None:
                    yield (progress_html(update, language), update.text or gr.skip(),
                           gr.skip(), gr.skip(), gr.skip())
            result = job.result().value
            if result is None:
                return
            choices = [(source_label(s, language), n) for n, s in enumerate(result.sources)]
            yield (progress_html(job.latest, language), answer_markdown(result, language),
                   gr.update(choices=choices, value=None), "", {"question": question, "result": result})
        except UserError as exc:
            yield html.escape(say(request, "common_warning", message=exc)), gr.skip(), gr.skip(), gr.skip(), None
        finally:
            job.stop()

    def stop(request: gr.Request):
        services.jobs.stop(request.session_hash, "ask")

    def open_source(index, asked, request: gr.Request):
        if index is None or not asked:
            return ""
        source = asked["result"].sources[index]
        passage = services.documents.chunks(source.document_id)[source.position].text
        return passage_html(passage, source, language_of(request))

    def continue_as_chat(asked, request: gr.Request):
        if not asked:
            return say(request, "ask_nothing_to_continue")
        result = asked["result"]
        title = services.chat.start_from_answer(asked["question"], chat_text(asked["question"], result,
                                                                             language_of(request)))
        return say(request, "ask_continued", title=title)

    with gr.Group(elem_id="ask-panel"):
        picks = gr.CheckboxGroup(choices=documents_choices("en"), label=t("ask_documents"), elem_id="ask-docs")
        with gr.Row(equal_height=True):
            question = gr.Textbox(label=t("ask_question"), placeholder=t("ask_question_placeholder"), lines=1,
                                  max_lines=4, elem_id="ask-question", scale=4)
            mode = gr.Radio([(t("ask_mode_quick"), "quick"), (t("ask_mode_whole"), "whole")], value="quick",
                            label=t("ask_mode"), elem_id="ask-mode", scale=2)
        with gr.Row():
            ask_btn = gr.Button(t("ask_button"), variant="primary", elem_id="ask")
            stop_btn = gr.Button(t("common_stop"), variant="stop", elem_id="ask-stop")
            chat_btn = gr.Button(t("ask_continue"), elem_id="ask-chat")
        progress = gr.HTML("", elem_id="ask-progress")
        answer = safe_markdown("", elem_id="ask-answer")
        sources = gr.Radio([], label=t("ask_sources"), elem_id="ask-sources")
        passage = gr.HTML("", elem_id="ask-passage")
        note = safe_markdown("", elem_id="ask-note")
        asked = gr.State(None)  # this tab's last question and its result

    outputs = [progress, answer, sources, passage, asked]
    for trigger in (ask_btn.click, question.submit):
        trigger(run_ask, [picks, question, mode], outputs, concurrency_id="llm", concurrency_limit=1)
    stop_btn.click(stop, None, None, concurrency_limit=None)
    sources.input(open_source, [sources, asked], passage)
    chat_btn.click(continue_as_chat, asked, note)
    return picks

