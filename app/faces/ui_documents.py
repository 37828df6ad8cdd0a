"""The Documents tab: drop files (the last one dropped is selected), see them against the context
(one token count per document, its stored Tekken count, in the table, the choice and the progress line),
summarize with a progress bar that moves inside every engine call, download the summary as
Markdown, delete with an undo. Layout and wiring only; the work is in the services."""

import html
import time
from pathlib import Path

from app.base.errors import UserError
from app.documents.language import LANGUAGES
from app.documents.reading import KINDS, TOKENIZER, read_document
from app.faces.i18n import LANGUAGES as PAGE_LANGUAGES
from app.faces.i18n import in_page_language, language_of, say, t, text
from app.faces.language_note import language_name as page_language_name
from app.faces.language_note import language_warning
from app.faces.progress_text import summary_line
from app.faces.safe_markdown import safe_markdown
from app.faces.ui_ask import ask_panel
from app.faces.temp_files import TabFiles, file_name, forget_upload
from app.services.summarize import LENGTHS, SummaryOptions, SummaryUpdate

HEADERS = ["documents_col_document", "documents_col_title", "documents_col_language", "documents_col_pages",
           "documents_col_tokens", "documents_col_context", "documents_col_added"]  # locale keys


def context_fit(tokens: int, n_ctx: int, language: str = "en") -> str:
    """'fits in one pass' or '12.3× the context: read in parts'."""
    if tokens <= n_ctx * 0.75:
        return text(language, "documents_fits")
    return text(language, "documents_in_parts", times=f"{tokens / n_ctx:,.1f}")


def starting_html(language: str) -> str:
    return f"<div class='doc-progress'><progress></progress> <span>{text(language, 'documents_starting')}</span></div>"


def progress_html(update: SummaryUpdate, language: str = "en") -> str:
    """The bar and its line; on the result, a stop hint or a warning when the summary's language is not the one asked."""
    p, result = update.progress, update.result
    hint = " " + text(language, "documents_resume_hint") if result and result.stopped else ""
    warning = language_warning(result.language, "summary", language) if result else ""
    return (f"<div class='doc-progress'><progress value='{p.done}' max='{max(p.total, 1)}'></progress> "
            f"<span>{html.escape(summary_line(update, language) + hint)}</span>"
            + (f"<p class='doc-warning' role='alert'>{html.escape(warning)}</p>" if warning else "") + "</div>")


def documents_tab(services, files: TabFiles, max_file_mb: int = 100) -> None:
    """Build the Documents tab inside the current gr.Blocks; `services` are the app's Services,
    `files` keeps the downloads made for each browser tab."""
    import gradio as gr

    store = services.documents

    def rows(language: str, query: str = "") -> dict:
        """The table's headers and rows (those `query` finds), in `language`."""
        n_ctx = services.settings.n_ctx
        return {"headers": [text(language, key, tokenizer=TOKENIZER) for key in HEADERS],
                "data": [[d["file_name"], d["title"], page_language_name(d["language"], language), d["pages"] or "—",
                          f"{d['tokens']:,}", context_fit(d["tokens"], n_ctx, language),
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(d["created_at"]))]
                         for d in store.find(query)]}

    def choices(language: str, query: str = "") -> list[tuple[str, int]]:
        return [(text(language, "documents_choice", name=d["file_name"], tokens=f"{d['tokens']:,}"), d["id"])
                for d in store.find(query)]

    def refresh(selected=None, picked=None, query: str = "", request: gr.Request | None = None):
        """The table, its hint when it is empty, the choice and the documents to ask (those `query`
        finds), what was chosen kept while it exists."""
        language = language_of(request)
        listed = choices(language, query)
        kept = selected if any(value == selected for _, value in listed) else None
        every = {value for _, value in choices(language)}
        return (gr.update(value=rows(language, query)), empty_hint(language, query, listed, every),
                gr.update(choices=listed, value=kept), gr.update(choices=listed, value=[i for i in picked or [] if i in every]))

    def empty_hint(language: str, query: str, listed: list, every: set) -> str:
        """What an empty table means: no document yet (and how to add one), or none the search finds."""
        if not every:
            return text(language, "documents_empty")
        return "" if listed else text(language, "documents_none_found", query=query)

    def add_files(paths, selected, picked, request: gr.Request):
        """Read and store each file; the last one stored becomes the chosen document."""
        lines = []
        for path in paths or []:
            name = Path(path).name
            try:  # read as this tab's job: its Stop ends a long parse (the limits are in Settings)
                job = services.jobs.start(request.session_hash, "reading", lambda progress, cancel: read_document(
                    path, name, max_file_mb * 2**20, **services.settings.parse_limits(), cancel=cancel))
                outcome = job.result()
                if outcome.stopped:
                    lines.append(say(request, "documents_read_stopped", name=name))
                    continue
                document = outcome.value
                selected, added = store.add(document)
                key = "documents_added_page" if document.pages == 1 else \
                    "documents_added_pages" if document.pages else "documents_added"
                line = say(request, key, name=document.file_name, pages=document.pages,
                           language=page_language_name(document.language, language_of(request)),
                           tokens=f"{document.tokens:,}")
                lines.append(line if added else f"{line} {say(request, 'documents_already_here')}")
            except UserError as exc:
                lines.append(say(request, "common_warning", message=exc))
            finally:
                forget_upload(path)  # the upload is not kept once read
        return ("\n\n".join(lines), None, *refresh(selected, picked, "", request), gr.update(visible=False))

    def summary_file(request: gr.Request, document_id: int, summary: str) -> str:
        title = store.document(document_id)["title"]
        return files.write(request.session_hash, file_name(title, say(request, "documents_summary_suffix")),
                           f"# {title}\n\n{summary}\n")

    def show(document_id, request: gr.Request):
        if document_id is None:
            return "", "", gr.update(value=None, interactive=False)
        kept = store.summaries(document_id)
        if not kept:
            return "", "", gr.update(value=None, interactive=False)
        path = summary_file(request, document_id, kept[0]["text"])
        return "", kept[0]["text"], gr.update(value=path, interactive=True)

    def run_summary(document_id, length, language, references, request: gr.Request):
        if document_id is None:
            yield say(request, "documents_choose_first"), gr.skip(), gr.skip()
            return
        options = SummaryOptions(length, language or "", bool(references))
        job = services.jobs.start(request.session_hash, "summary",
                                  lambda progress, cancel: services.summarize(document_id, options, cancel))
        yield starting_html(language_of(request)), "", gr.update(interactive=False)
        try:
            for _ in job.watch():
                update = job.latest
                if update is not None:
                    yield (progress_html(update, language_of(request)),
                           update.text or gr.skip(), gr.skip())
            result = job.result().value
            if not result.stopped:
                path = summary_file(request, document_id, result.text)
                yield gr.skip(), result.text, gr.update(value=path, interactive=True)
        except UserError as exc:
            yield html.escape(say(request, "common_warning", message=exc)), gr.skip(), gr.skip()
        finally:
            job.stop()

    def stop(request: gr.Request):
        for kind in ("reading", "summary"):
            services.jobs.stop(request.session_hash, kind)

    def delete(document_id, picked, request: gr.Request):
        """Delete at once, keeping what was deleted in this tab for Undo."""
        if document_id is None:
            return say(request, "documents_choose_to_delete"), *[gr.skip()] * 9
        try:
            removed = store.delete(document_id)
        except UserError as exc:
            return (say(request, "common_warning", message=exc), gr.skip(), gr.skip(), gr.skip(),
                    *refresh(None, picked, "", request), gr.update(visible=False), None)
        return (say(request, "documents_deleted", name=removed.file_name), "", "",
                gr.update(value=None, interactive=False), *refresh(None, picked, "", request), gr.update(visible=True),
                removed)

    def undo(removed, picked, request: gr.Request):
        if removed is None:
            return *[gr.skip()] * 5, gr.update(visible=False), None
        try:
            document_id = store.restore(removed)
        except UserError as exc:
            return (say(request, "common_warning", message=exc), *refresh(None, picked, "", request),
                    gr.update(visible=False), None)
        return (say(request, "documents_back", name=removed.file_name), *refresh(document_id, picked, "", request),
                gr.update(visible=False), None)

    def page_words(selected, picked, query: str, request: gr.Request):
        """The tab in the page's language: the drop zone's label (it holds the size limit), table, choices."""
        drop_label = say(request, "documents_drop", mb=max_file_mb)
        return gr.update(label=drop_label), *refresh(selected, picked, query or "", request)

    def summary_languages():
        return [(t("documents_same_language"), ""),
                *((t(f"language_{code}") if code in PAGE_LANGUAGES else name, code)
                  for code, name in LANGUAGES.items())]

    with gr.Tab(t("tab_documents")) as tab:
        drop = gr.File(label=t("documents_drop_short"), file_count="multiple", file_types=sorted(KINDS),
                       type="filepath", elem_id="doc-drop")
        with gr.Row(equal_height=True):
            status = safe_markdown("", elem_id="doc-status")
            undo_btn = gr.Button(t("common_undo"), visible=False, size="sm", scale=0, min_width=90, elem_id="doc-undo")
        removed = gr.State(None)  # the document this tab deleted last, until Undo
        search = gr.Textbox(label=t("documents_search"), placeholder=t("documents_search_placeholder"), lines=1,
                            max_lines=1, elem_id="doc-search")
        table = gr.Dataframe(value=rows("en"), interactive=False, elem_id="doc-table")  # headers in the value
        hint = safe_markdown("", elem_id="doc-empty")  # what an empty table means
        with gr.Row():
            choice = gr.Dropdown(choices=choices("en"), value=None, label=t("documents_document"), elem_id="doc-choice",
                                 scale=2)
            length = gr.Radio([(t(f"documents_length_{size}"), size) for size in LENGTHS], value="medium",
                              label=t("documents_length"), elem_id="doc-length", scale=2)
            language = gr.Dropdown(summary_languages(), value="", label=t("documents_summary_language"),
                                   elem_id="doc-language", scale=2, min_width=240)
            references = gr.Checkbox(label=t("documents_references"), elem_id="doc-references", scale=1)
        with gr.Row():
            summarize_btn = gr.Button(t("documents_summarize"), variant="primary", elem_id="summarize")
            stop_btn = gr.Button(t("common_stop"), variant="stop", elem_id="doc-stop")
            download = gr.DownloadButton(t("documents_download"), interactive=False, elem_id="doc-download")
            delete_btn = gr.Button(t("common_delete"), elem_id="doc-delete")
        progress = gr.HTML("", elem_id="doc-progress")
        summary = safe_markdown("", elem_id="doc-summary")
        picks = ask_panel(services, choices)

    listing = [table, hint, choice, picks]
    in_page_language(page_words, [choice, picks, search], [drop, *listing])
    tab.select(refresh, [choice, picks, search], listing)
    search.change(refresh, [choice, picks, search], listing)
    shown = [progress, summary, download]
    drop.upload(add_files, [drop, choice, picks], [status, drop, *listing, undo_btn]).then(show, choice, shown)
    choice.input(show, choice, shown)
    summarize_btn.click(run_summary, [choice, length, language, references], shown,
                        concurrency_id="llm", concurrency_limit=1)
    stop_btn.click(stop, None, None, concurrency_limit=None)
    delete_btn.click(delete, [choice, picks], [status, progress, summary, download, *listing, undo_btn, removed])
    undo_btn.click(undo, [removed, picks], [status, *listing, undo_btn, removed]).then(show, choice, shown)
