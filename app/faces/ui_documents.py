"""The Documents tab: drop files (the last one dropped is selected), see them against the context,
summarize with a progress bar that moves inside every engine call, download the summary as
Markdown, delete with an undo. Layout and wiring only; the work is in the services."""

import html
from pathlib import Path

from app.base.errors import UserError
from app.documents.language import LANGUAGES, language_name
from app.documents.reading import KINDS, read_document
from app.faces.language_note import language_warning
from app.faces.temp_files import TabFiles, file_name, forget_upload
from app.faces.web_guard import remote_images_as_links
from app.services.summarize import LENGTHS, SummaryOptions, SummaryUpdate, format_progress
from app.services.translate import count_noun

HEADERS = ["Document", "Title", "Language", "Pages", "Tokens", "Against the context"]


def context_fit(tokens: int, n_ctx: int) -> str:
    """'fits in one pass' or '12.3× the context: read in parts'."""
    if tokens <= n_ctx * 0.75:
        return "fits in one pass"
    return f"{tokens / n_ctx:,.1f}× the context: read in parts"


STARTING = "<div class='doc-progress'><progress></progress> <span>starting: loading the model…</span></div>"


def progress_html(update: SummaryUpdate) -> str:
    """The bar and its line; on the result, a stop hint or a warning when the summary's language is not the one asked."""
    p, result = update.progress, update.result
    hint = " (Summarize again to go on from here)" if result and result.stopped else ""
    warning = language_warning(result.language, "summary") if result else ""
    return (f"<div class='doc-progress'><progress value='{p.done}' max='{max(p.total, 1)}'></progress> "
            f"<span>{html.escape(format_progress(update) + hint)}</span>"
            + (f"<p class='doc-warning' role='alert'>{html.escape(warning)}</p>" if warning else "") + "</div>")


def documents_tab(services, files: TabFiles, max_file_mb: int = 100) -> None:
    """Build the Documents tab inside the current gr.Blocks; `services` are the app's Services,
    `files` keeps the downloads made for each browser tab."""
    import gradio as gr

    store = services.documents

    def rows() -> list[list]:
        n_ctx = services.settings.n_ctx
        return [[d["file_name"], d["title"], language_name(d["language"]), d["pages"] or "—", f"{d['tokens']:,}",
                 context_fit(d["tokens"], n_ctx)] for d in store.documents()]

    def choices() -> list[tuple[str, int]]:
        return [(f"{d['file_name']} ({d['tokens']:,} tokens)", d["id"]) for d in store.documents()]

    def refresh(selected=None):
        """The table and the choice, `selected` kept chosen while it exists."""
        listed = choices()
        kept = selected if any(value == selected for _, value in listed) else None
        return gr.update(value=rows()), gr.update(choices=listed, value=kept)

    def add_files(paths, selected, request: gr.Request):
        """Read and store each file; the last one stored becomes the chosen document."""
        lines = []
        for path in paths or []:
            name = Path(path).name
            try:  # read as this tab's job: its Stop ends a long parse (the limits are in Settings)
                job = services.jobs.start(request.session_hash, "reading", lambda progress, cancel: read_document(
                    path, name, max_file_mb * 2**20, **services.settings.parse_limits(), cancel=cancel))
                outcome = job.result()
                if outcome.stopped:
                    lines.append(f"⏹ {name}: stopped; nothing was stored")
                    continue
                document = outcome.value
                selected, added = store.add(document)
                size = f"{count_noun(document.pages, 'page')} · " if document.pages else ""
                lines.append(f"✅ {document.file_name}: {size}{language_name(document.language)} · "
                             f"{document.tokens:,} tokens" + ("" if added else " (already here)"))
            except UserError as exc:
                lines.append(f"⚠️ {exc}")
            finally:
                forget_upload(path)  # the upload is not kept once read
        return ("\n\n".join(lines), None, *refresh(selected), gr.update(visible=False))

    def summary_file(request: gr.Request, document_id: int, text: str) -> str:
        title = store.document(document_id)["title"]
        return files.write(request.session_hash, file_name(title, " - summary.md"), f"# {title}\n\n{text}\n")

    def show(document_id, request: gr.Request):
        if document_id is None:
            return "", "", gr.update(value=None, interactive=False)
        kept = store.summaries(document_id)
        if not kept:
            return "", "", gr.update(value=None, interactive=False)
        path = summary_file(request, document_id, kept[0]["text"])
        return "", remote_images_as_links(kept[0]["text"]), gr.update(value=path, interactive=True)

    def run_summary(document_id, length, language, references, request: gr.Request):
        if document_id is None:
            yield "⚠️ Drop a document or choose one first.", gr.skip(), gr.skip()
            return
        options = SummaryOptions(length, language or "", bool(references))
        job = services.jobs.start(request.session_hash, "summary",
                                  lambda progress, cancel: services.summarize(document_id, options, cancel))
        yield STARTING, "", gr.update(interactive=False)
        try:
            for _ in job.watch():
                update = job.latest
                if update is not None:
                    yield progress_html(update), remote_images_as_links(update.text) or gr.skip(), gr.skip()
            result = job.result().value
            if not result.stopped:
                path = summary_file(request, document_id, result.text)
                yield gr.skip(), remote_images_as_links(result.text), gr.update(value=path, interactive=True)
        except UserError as exc:
            yield f"⚠️ {html.escape(str(exc))}", gr.skip(), gr.skip()
        finally:
            job.stop()

    def stop(request: gr.Request):
        for kind in ("reading", "summary"):
            services.jobs.stop(request.session_hash, kind)

    def delete(document_id):
        """Delete at once, keeping what was deleted in this tab for Undo."""
        if document_id is None:
            return "⚠️ Choose a document to delete first.", *[gr.skip()] * 7
        try:
            removed = store.delete(document_id)
        except UserError as exc:
            return f"⚠️ {exc}", gr.skip(), gr.skip(), gr.skip(), *refresh(), gr.update(visible=False), None
        return (f"🗑 Deleted {removed.file_name}, with its summaries and translations.", "", "",
                gr.update(value=None, interactive=False), *refresh(), gr.update(visible=True), removed)

    def undo(removed):
        if removed is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.update(visible=False), None
        try:
            document_id = store.restore(removed)
        except UserError as exc:
            return f"⚠️ {exc}", *refresh(), gr.update(visible=False), None
        return f"↩ {removed.file_name} is back.", *refresh(document_id), gr.update(visible=False), None

    with gr.Tab("Documents") as tab:
        drop = gr.File(label=f"Drop PDF, DOCX, HTML, Markdown or text files here (up to {max_file_mb} MB each)",
                       file_count="multiple", file_types=sorted(KINDS), type="filepath", elem_id="doc-drop")
        with gr.Row(equal_height=True):
            status = gr.Markdown("", elem_id="doc-status")
            undo_btn = gr.Button("Undo", visible=False, size="sm", scale=0, min_width=90, elem_id="doc-undo")
        removed = gr.State(None)  # the document this tab deleted last, until Undo
        table = gr.Dataframe(value=rows(), headers=HEADERS, interactive=False, elem_id="doc-table")
        with gr.Row():
            choice = gr.Dropdown(choices=choices(), value=None, label="Document", elem_id="doc-choice", scale=2)
            length = gr.Radio(list(LENGTHS), value="medium", label="Length", elem_id="doc-length", scale=2)
            language = gr.Dropdown([("Same as the document", ""), *((n, c) for c, n in LANGUAGES.items())],
                                   value="", label="Summary language", elem_id="doc-language", scale=2,
                                   min_width=240)
            references = gr.Checkbox(label="Page or section references", elem_id="doc-references", scale=1)
        with gr.Row():
            summarize_btn = gr.Button("Summarize", variant="primary", elem_id="summarize")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="doc-stop")
            download = gr.DownloadButton("Download as Markdown", interactive=False, elem_id="doc-download")
            delete_btn = gr.Button("Delete", elem_id="doc-delete")
        progress = gr.HTML("", elem_id="doc-progress")
        summary = gr.Markdown("", elem_id="doc-summary")

    tab.select(refresh, choice, [table, choice])
    shown = [progress, summary, download]
    drop.upload(add_files, [drop, choice], [status, drop, table, choice, undo_btn]).then(show, choice, shown)
    choice.input(show, choice, shown)
    summarize_btn.click(run_summary, [choice, length, language, references], shown,
                        concurrency_id="llm", concurrency_limit=1)
    stop_btn.click(stop, None, None, concurrency_limit=None)
    delete_btn.click(delete, choice, [status, progress, summary, download, table, choice, undo_btn, removed])
    undo_btn.click(undo, removed, [status, table, choice, undo_btn, removed]).then(show, choice, shown)
