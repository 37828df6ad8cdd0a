"""The Translate tab: a thin face over translate.TranslationJob.

Paste text or drop a document, choose the languages (the detected source is shown), optionally a
glossary; the source and its translation stream side by side, one row per segment; Stop keeps
what is done (a new run resumes from the cache); the result downloads as Markdown or text.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from pathlib import Path

import gradio as gr

from app.base.errors import UserError
from app.documents.language import detect_language
from app.documents.reading import ACCEPTED, KINDS, read_document
from app.faces.language_note import language_warning
from app.faces.temp_files import TabFiles, file_name, forget_upload
from app.services.engine_calls import duration
from app.services.translate import (AUTO, TranslationJob, TranslationRequest, TranslationUpdate, count_noun,
                                    glossary_from_rows, language_choices, language_label, read_glossary)

CELL = "white-space:pre-wrap;vertical-align:top;padding:6px 10px;border-top:1px solid #8884;width:50%"
WAITING = "<span style='opacity:.5'>…</span>"


def side_by_side(rows: list[tuple[str, str | None]], partial: tuple[int, str] | None = None) -> str:
    """An HTML table: source and translation of each segment on one row (text shown as written)."""
    cells = []
    for n, (source, target) in enumerate(rows):
        shown = html.escape(target) if target is not None else WAITING
        if partial and partial[0] == n:
            shown = f"<span style='opacity:.7'>{html.escape(partial[1])}</span>"
        cells.append(f"<tr><td dir='auto' style='{CELL}'>{html.escape(source)}</td>"
                     f"<td dir='auto' style='{CELL}'>{shown}</td></tr>")
    return ("<table id='translation-table' style='width:100%;border-collapse:collapse'>"
            "<tr><th>Source</th><th>Translation</th></tr>" + "".join(cells) + "</table>")


def status_line(job: TranslationJob, update: TranslationUpdate | None, started: float) -> str:
    """'translating into French · part 2 of 5 · now reading the prompt: 256 / 700 tokens · about 40 s left · 12 s'."""
    p = job.progress()
    line = f"{p.what} · part {min(p.done + 1, p.total)} of {p.total}"
    if update is not None and update.call is not None:
        line += f" · now {update.call.describe()}"
    if job.calls.cached_calls:
        line += f" · {count_noun(job.calls.cached_calls, 'part')} from earlier runs"
    if update is not None and update.eta_s is not None:
        line += f" · {duration(update.eta_s)} left"
    return line + f" · {time.monotonic() - started:.0f} s"


def result_line(job: TranslationJob) -> str:
    """What happened, for a person: success only when the translation is in the language asked for."""
    result = job.result
    languages = f"{language_label(result.source_language)} → {language_label(result.target_language)}"
    earlier = f", {result.cached_segments} from earlier runs" if result.cached_segments else ""
    parts = f"{count_noun(result.segments, 'part')}{earlier}"
    warning = language_warning(result.language, "translation")
    if result.stopped:
        line = f"⏹ Stopped ({languages}, {parts}): translate again to go on from here."
    else:
        line = f"{'Done' if warning else '✅ Translated'} {languages} in {parts}."
    if warning:
        line += f"\n\n{warning}"
    if not result.structure_kept:
        line += "\n\n⚠️ The layout (headings, lists, tables or code) changed: check the result."
    for miss in result.misses:
        line += f"\n\n⚠️ Glossary: “{miss.source}” was not translated as “{miss.target}” in " \
                f"{'part' if len(miss.segments) == 1 else 'parts'} {', '.join(map(str, miss.segments))}."
    if result.problems:
        notes = Counter(result.problems)
        line += "\n\n" + "\n".join(f"- {note}" + (f" ({n} times)" if n > 1 else "") for note, n in notes.items())
    return line


def translate_tab(services, files: TabFiles) -> None:
    """The Translate tab; call inside the Blocks context. `services` are the app's Services,
    `files` keeps the downloads made for each browser tab."""
    store = services.documents
    languages = language_choices()
    with gr.Tab("Translate"):
        document = gr.State(None)
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text to translate (Markdown)", lines=8, max_lines=20, elem_id="translate-text")
                upload = gr.File(label=f"…or drop a document ({ACCEPTED}); while it is here, it is translated", file_types=list(KINDS),
                                 elem_id="translate-file")
                plain = gr.Checkbox(False, label="Plain text, not Markdown")
            with gr.Column():
                with gr.Row():
                    source = gr.Dropdown([("Detect the language", AUTO), *languages], value=AUTO, label="From",
                                         elem_id="translate-from")
                    target = gr.Dropdown(languages, value="fr", label="To", elem_id="translate-to")
                detected = gr.Markdown("", elem_id="translate-detected")
                glossary = gr.Dataframe(headers=["Source term", "Target term"], column_count=(2, "fixed"),
                                        row_count=2, type="array", interactive=True,
                                        label="Glossary (optional)", elem_id="translate-glossary")
                glossary_csv = gr.UploadButton("Load a glossary CSV", file_types=[".csv"], size="sm")
        with gr.Row():
            start = gr.Button("Translate", variant="primary", elem_id="translate-start")
            stop = gr.Button("Stop", variant="stop", elem_id="translate-stop")
        status = gr.Markdown("", elem_id="translate-status")
        table = gr.HTML("", elem_id="translate-side")
        download = gr.File(label="Download the translation", interactive=False, height=90,
                           elem_id="translate-download")
        with gr.Accordion("Saved translations", open=False):
            saved = gr.Dropdown([], label="Open a saved translation", elem_id="translate-saved")

    def saved_choices():
        rows = store.translations()
        return gr.update(choices=[(f"{r['title']} · {r['source_language']}→{r['target_language']} · {r['status']}",
                                   r["id"]) for r in rows])

    def load_document(path):
        if not path:
            return None, ""
        try:
            doc = read_document(path, **services.settings.parse_limits())
            document_id, _ = store.add(doc)
        except UserError as exc:
            return None, f"⚠️ {exc}"
        finally:
            forget_upload(path)  # the upload is not kept once read
        return document_id, (f"**{doc.title}** · {doc.kind} · {doc.tokens:,} tokens · "
                             f"detected: {language_label(doc.language)}")

    def detect(value, document_id):
        if document_id is not None or not (value or "").strip():
            return gr.skip()
        return f"Detected: {language_label(detect_language(value))}"

    def load_glossary(file):
        try:
            return [list(pair) for pair in read_glossary(file)] or [["", ""]], ""
        except UserError as exc:
            return gr.skip(), f"⚠️ {exc}"

    def run(value, document_id, plain_text, source_language, target_language, terms, request: gr.Request):
        started = time.monotonic()
        yield "starting: loading the model and planning the parts…", gr.skip(), gr.skip(), gr.skip()
        try:
            if document_id is not None:
                doc = store.document(document_id)
                job_request = TranslationRequest(
                    doc["markdown"], target_language, source_language, not plain_text and doc["kind"] != "text",
                    glossary_from_rows(terms), doc["title"], document_id)
                name = doc["file_name"]
            elif (value or "").strip():
                job_request = TranslationRequest(value, target_language, source_language, not plain_text,
                                                 glossary_from_rows(terms))
                name = "translation"
            else:
                raise UserError("paste some text or drop a document first")
            job = services.translation(job_request, max_tokens=services.settings.max_tokens)
        except UserError as exc:
            yield f"⚠️ {exc}", gr.skip(), gr.skip(), gr.skip()
            return
        detected_line = f"Source: {language_label(job.source_language)}" + \
            (" (detected)" if source_language == AUTO else "")
        yield status_line(job, None, started), side_by_side(job.rows()), None, detected_line
        running = services.jobs.start(request.session_hash, "translation", lambda progress, cancel: job.run(cancel))
        try:
            for _ in running.watch():
                update = running.latest
                if update is not None and update.result is None:
                    partial = (job.row_of(update.segment), update.partial) if update.segment is not None else None
                    yield status_line(job, update, started), side_by_side(job.rows(), partial), gr.skip(), gr.skip()
            running.result()
        except UserError as exc:
            yield f"⚠️ {exc}", side_by_side(job.rows()), gr.skip(), gr.skip()
            return
        finally:
            running.stop()
        file = files.write(request.session_hash, file_name(Path(name).stem, ".md" if job_request.markdown else ".txt"),
                           job.result.text)
        yield result_line(job), side_by_side(job.rows()), file, gr.skip()

    def stop_job(request: gr.Request):
        services.jobs.stop(request.session_hash, "translation")

    def open_saved(translation_id, request: gr.Request):
        if translation_id is None:
            return gr.skip(), gr.skip(), gr.skip()
        row = store.translation(translation_id)
        file = files.write(request.session_hash, file_name(row["title"] or "translation",
                                                           ".md" if row["format"] == "markdown" else ".txt"), row["text"])
        return f"Saved translation ({row['status']}, {row['model']})", side_by_side([(row["source"], row["text"])]), file

    upload.change(load_document, upload, [document, detected])
    text.input(detect, [text, document], detected, trigger_mode="always_last", show_progress="hidden")
    glossary_csv.upload(load_glossary, glossary_csv, [glossary, status])
    event = start.click(run, [text, document, plain, source, target, glossary], [status, table, download, detected],
                        concurrency_id="llm", concurrency_limit=1)
    event.then(saved_choices, None, saved)
    stop.click(stop_job, None, None, concurrency_limit=None)
    saved.input(open_saved, saved, [status, table, download])
    saved.focus(saved_choices, None, saved)
