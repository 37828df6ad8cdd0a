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
from app.base.messages import Message
from app.documents.language import detect_language
from app.documents.reading import KINDS, read_document
from app.faces.i18n import in_page_language, language_of, say, t, text, words
from app.faces.language_note import language_name, language_warning
from app.faces.progress_text import call_text, duration_text
from app.faces.safe_markdown import safe_markdown
from app.faces.temp_files import TabFiles, file_name, forget_upload
from app.services.glossary import glossary_from_rows, read_glossary
from app.services.translate import AUTO, TranslationJob, TranslationRequest, TranslationUpdate, language_choices

CELL = "white-space:pre-wrap;vertical-align:top;padding:6px 10px;border-top:1px solid #8884;width:50%"
WAITING = "<span style='opacity:.5'>…</span>"
TABLE = "<table id='translation-table' style='width:100%;border-collapse:collapse'>"


def side_by_side(rows: list[tuple[str, str | None]], partials: dict[int, str] | None = None,
                 language: str = "en") -> str:
    """An HTML table: source and translation of each segment on one row (text shown as written);
    `partials`: row -> the reply so far of a segment being written there."""
    cells = []
    for n, (source, target) in enumerate(rows):
        shown = html.escape(target) if target is not None else WAITING
        if partials and n in partials:
            shown = f"<span class='writing' style='opacity:.7'>{html.escape(partials[n]) or '…'}</span>"
        cells.append(f"<tr><td dir='auto' style='{CELL}'>{html.escape(source)}</td>"
                     f"<td dir='auto' style='{CELL}'>{shown}</td></tr>")
    return TABLE + table_heads(language) + "".join(cells) + "</table>"


def table_heads(language: str) -> str:
    """The side-by-side table's header row in `language`."""
    return "<tr>" + "".join(f"<th>{html.escape(text(language, key))}</th>"
                            for key in ("translate_col_source", "translate_col_translation")) + "</tr>"


def headed(table: str, language: str) -> str:
    """A side-by-side table (as `side_by_side` wrote it) with its header row in `language`, its rows kept."""
    if not table.startswith(TABLE):
        return table
    return TABLE + table_heads(language) + table[len(TABLE):].split("</tr>", 1)[1]


def parts(n: int, language: str) -> str:
    """'1 part', '12 parts' in `language`."""
    return text(language, "translate_segments_one") if n == 1 else text(language, "translate_segments_many", n=f"{n:,}")


def status_line(job: TranslationJob, update: TranslationUpdate | None, started: float, language: str = "en") -> str:
    """'translating into French · part 2 of 5 · call 3 of 6 · now writing: 12 tokens (at most 80) · about 40 s
    left · 12 s': a part takes more calls than one when the model breaks its line numbers."""
    p = job.progress()
    what = text(language, "progress_translating_into", language=language_name(job.target, language))
    line = text(language, "translate_progress", what=what, done=min(p.done + 1, p.total), total=p.total)
    begun, planned = job.request_count()
    if begun:
        line += " · " + text(language, "translate_calls", done=f"{begun:,}", total=f"{planned:,}")
    if len(job.calls.live) > 1:
        line += " · " + text(language, "translate_at_once", count=len(job.calls.live))
    if update is not None and update.call is not None:
        line += " · " + text(language, "progress_now", call=call_text(update.call, language))
    if job.calls.cached_calls:
        line += " · " + text(language, "translate_progress_cached", parts=parts(job.calls.cached_calls, language))
    if update is not None and update.eta_s is not None:
        line += " · " + text(language, "progress_left", time=duration_text(update.eta_s, language))
    return line + " · " + text(language, "progress_elapsed", seconds=f"{time.monotonic() - started:.0f}")


def result_line(job: TranslationJob, language: str = "en") -> str:
    """What happened, for a person: success only when the translation is in the language asked for."""
    result = job.result
    names = {"source": language_name(result.source_language, language),
             "target": language_name(result.target_language, language)}
    done = parts(result.segments, language)
    if result.cached_segments:
        done = text(language, "translate_parts_earlier", parts=done, cached=result.cached_segments)
    warning = language_warning(result.language, "translation", language)
    key = "translate_stopped" if result.stopped else "translate_done_unsure" if warning else "translate_done"
    line = text(language, key, parts=done, **names)
    if warning:
        line += f"\n\n{warning}"
    if not result.structure_kept:
        line += "\n\n" + text(language, "translate_structure_changed")
    for miss in result.misses:
        where = text(language, "translate_in_part" if len(miss.segments) == 1 else "translate_in_parts",
                     numbers=", ".join(map(str, miss.segments)))
        line += "\n\n" + text(language, "translate_glossary_miss", source=miss.source, target=miss.target, parts=where)
    if result.problems:
        notes = Counter(result.problems)
        line += "\n\n" + "\n".join("- " + (text(language, "translate_note_times", note=note, n=n) if n > 1
                                            else words(language, note)) for note, n in notes.items())
    return line


def translated_file_name(name: str, target: str, markdown: bool) -> str:
    """'garden.fr.md' for garden.md (or garden.pdf) in French: the source's name, the target language,
    and .md or .txt as the translation is written; never the source's own name."""
    return file_name(Path(name).stem if Path(name).suffix.lower() in KINDS else name,
                     f".{target}.{'md' if markdown else 'txt'}")


def glossary_rows(terms) -> list[list[str]]:
    """The glossary's rows as the table holds them (two empty ones when it has none)."""
    rows = [["" if cell is None else str(cell) for cell in row]
            for row in terms or [] if isinstance(row, (list, tuple))]
    return rows or [["", ""], ["", ""]]


def language_labels(choices: list[tuple[Message, str]], language: str | None = None) -> list[tuple]:
    """The languages of a choice (what the service calls them) in words: in `language`; without
    one, as the page is built: NeMo's eleven translated by the page, the others in English until
    the page's words are written (`choice_words`)."""
    return [(words(language, said) if language else t(said.key) if not said.values else str(said), code)
            for said, code in choices]


def translate_tab(services, files: TabFiles) -> None:
    """The Translate tab; call inside the Blocks context. `services` are the app's Services,
    `files` keeps the downloads made for each browser tab."""
    store = services.documents
    languages = language_labels(language_choices())
    with gr.Tab(t("tab_translate")):
        document = gr.State(None)
        with gr.Row():
            with gr.Column():
                text_box = gr.Textbox(label=t("translate_text"), lines=8, max_lines=20, elem_id="translate-text")
                upload = gr.File(label=t("translate_drop_short"), file_types=list(KINDS), elem_id="translate-file")
                plain = gr.Checkbox(False, label=t("translate_plain"))
            with gr.Column():
                with gr.Row():
                    source = gr.Dropdown([(t("translate_detect"), AUTO), *languages], value=AUTO,
                                         label=t("translate_from"), elem_id="translate-from")
                    target = gr.Dropdown(languages, value="fr", label=t("translate_to"), elem_id="translate-to")
                detected = safe_markdown("", elem_id="translate-detected")
                glossary = gr.Dataframe(column_count=(2, "fixed"), row_count=2, type="array", interactive=True,
                                        label=t("translate_glossary"), elem_id="translate-glossary")
                glossary_csv = gr.UploadButton(t("translate_glossary_csv"), file_types=[".csv"], size="sm")
        with gr.Row():
            start = gr.Button(t("translate_start"), variant="primary", elem_id="translate-start")
            stop = gr.Button(t("common_stop"), variant="stop", elem_id="translate-stop")
        status = safe_markdown("", elem_id="translate-status")
        table = gr.HTML("", elem_id="translate-side")
        download = gr.File(label=t("translate_download"), interactive=False, height=90, visible=False,
                           elem_id="translate-download")  # shown with a file: an empty one is no valid element
        with gr.Accordion(t("translate_saved"), open=False):
            saved = gr.Dropdown([], label=t("translate_open_saved"), elem_id="translate-saved")

    def page_words(terms, value, document_id, request: gr.Request):
        """What holds a value or a table header, in the page's language: the drop zone's label, the
        glossary's headers (its terms kept) and the language detected in the text."""
        heads = [say(request, "translate_col_source_term"), say(request, "translate_col_target_term")]
        return (gr.update(label=say(request, "translate_drop", kinds=", ".join(sorted(KINDS)))),
                gr.update(value={"headers": heads, "data": glossary_rows(terms)}),
                detected_line(value, document_id, request))

    def ready(path):
        return gr.update(value=path, visible=path is not None)

    def saved_choices():
        rows = store.translations()
        return gr.update(choices=[(f"{r['title']} · {r['source_language']}→{r['target_language']} · {r['status']}",
                                   r["id"]) for r in rows])

    def document_line(document_id: int, request: gr.Request) -> str:
        """What was dropped: its title, kind, size in tokens and language."""
        doc = store.document(document_id)
        return say(request, "translate_document_line", title=doc["title"], kind=doc["kind"],
                   tokens=f"{doc['tokens']:,}", language=language_name(doc["language"], language_of(request)))

    def load_document(path, request: gr.Request):
        if not path:
            return None, ""
        try:
            doc = read_document(path, **services.settings.parse_limits())
            document_id, _ = store.add(doc)
        except UserError as exc:
            return None, say(request, "common_warning", message=exc)
        finally:
            forget_upload(path)  # the upload is not kept once read
        return document_id, document_line(document_id, request)

    def detect(value, document_id, request: gr.Request):
        if document_id is not None or not (value or "").strip():
            return gr.skip()
        return say(request, "translate_detected", language=language_name(detect_language(value), language_of(request)))

    def detected_line(value, document_id, request: gr.Request):
        """The line over the glossary: the document dropped, else the language of the text typed."""
        if document_id is None:
            return detect(value, document_id, request)
        try:
            return document_line(document_id, request)
        except UserError:
            return gr.skip()

    def load_glossary(file, request: gr.Request):
        try:
            return [list(pair) for pair in read_glossary(file)] or [["", ""]], ""
        except UserError as exc:
            return gr.skip(), say(request, "common_warning", message=exc)

    def run(value, document_id, plain_text, source_language, target_language, terms, request: gr.Request):
        started, language = time.monotonic(), language_of(request)
        yield say(request, "translate_starting"), gr.skip(), gr.skip(), gr.skip()
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
                raise UserError(say(request, "translate_nothing"))
            job = services.translation(job_request, max_tokens=services.settings.max_tokens)
        except UserError as exc:
            yield say(request, "common_warning", message=exc), gr.skip(), gr.skip(), gr.skip()
            return
        detected_line = say(request, "translate_source_detected" if source_language == AUTO else "translate_source",
                            language=language_name(job.source_language, language))
        yield status_line(job, None, started, language), side_by_side(job.rows(), None, language), ready(None), \
            detected_line
        running = services.jobs.start(request.session_hash, "translation", lambda progress, cancel: job.run(cancel))
        try:
            for _ in running.watch():
                update = running.latest
                if update is not None and update.result is None:
                    partials = {job.row_of(segment): reply for segment, reply in list(job.writing.items())}
                    yield (status_line(job, update, started, language), side_by_side(job.rows(), partials, language),
                           gr.skip(), gr.skip())
            running.result()
        except UserError as exc:
            yield say(request, "common_warning", message=exc), side_by_side(job.rows(), None, language), gr.skip(), \
                gr.skip()
            return
        finally:
            running.stop()
        file = files.write(request.session_hash, translated_file_name(name, job.target, job_request.markdown),
                           job.result.text)
        yield result_line(job, language), side_by_side(job.rows(), None, language), ready(file), gr.skip()

    def stop_job(request: gr.Request):
        services.jobs.stop(request.session_hash, "translation")

    def open_saved(translation_id, request: gr.Request):
        if translation_id is None:
            return gr.skip(), gr.skip(), gr.skip()
        row = store.translation(translation_id)
        file = files.write(request.session_hash, translated_file_name(row["title"] or "translation", row["target_language"],
                                                                      row["format"] == "markdown"), row["text"])
        return (say(request, "translate_saved_line", status=row["status"], model=row["model"]),
                side_by_side([(row["source"], row["text"])], None, language_of(request)), ready(file))

    upload.change(load_document, upload, [document, detected])
    def choice_words(source_code, target_code, request: gr.Request):
        """The From and To choices in the page's language, the less supported ones included."""
        languages = language_labels(language_choices(), language_of(request))
        return (gr.update(choices=[(say(request, "translate_detect"), AUTO), *languages], value=source_code),
                gr.update(choices=languages, value=target_code))

    def table_words(shown, request: gr.Request):
        return headed(shown, language_of(request)) if shown else gr.skip()

    in_page_language(page_words, [glossary, text_box, document], [upload, glossary, detected])
    in_page_language(choice_words, [source, target], [source, target])
    in_page_language(table_words, table, table, on_load=False)  # the table shown after a translation
    text_box.input(detect, [text_box, document], detected, trigger_mode="always_last", show_progress="hidden")
    glossary_csv.upload(load_glossary, glossary_csv, [glossary, status])
    event = start.click(run, [text_box, document, plain, source, target, glossary], [status, table, download, detected],
                        concurrency_id="llm", concurrency_limit=1)
    event.then(saved_choices, None, saved)
    stop.click(stop_job, None, None, concurrency_limit=None)
    saved.input(open_saved, saved, [status, table, download])
    saved.focus(saved_choices, None, saved)
