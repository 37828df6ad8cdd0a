"""The progress lines of long jobs (summaries, translations, questions) in a language, worded from
the services' structured fields with the locale files: for the page (values isolated right to
left) and for the command line (`terminal=True`, in `locale_text.terminal_language()`'s words)."""

from __future__ import annotations

from app.base.jobs import WAITING
from app.faces import locale_text
from app.faces.locale_text import RIGHT_TO_LEFT
from app.services import retrieval
from app.services import summarize as job
from app.services.engine_calls import READING, CallProgress, duration_parts
from app.services.summarize import SummaryUpdate

STAGES = {job.STARTING: "progress_stage_starting", job.READING_DOCUMENT: "progress_stage_reading",
          job.COMBINING_SUMMARIES: "progress_stage_combining", job.WRITING_SUMMARY: "progress_stage_writing",
          job.STOPPED: "progress_stage_stopped", job.DONE: "progress_stage_done"}  # a summary's stages: locale keys
ASK_STAGES = {retrieval.FINDING: "ask_stage_finding", retrieval.READING: "ask_stage_reading",
              retrieval.ANSWERING: "ask_stage_answering", retrieval.STOPPED: "ask_stage_stopped",
              retrieval.DONE: "ask_stage_done"}  # a question's stages: locale keys


def text(language: str, key: str, /, terminal: bool = False, **values) -> str:
    """`locale_text.text`; on a right-to-left page (not a terminal) each value keeps its direction."""
    return locale_text.text(language, key, isolate=language in RIGHT_TO_LEFT and not terminal, **values)


def stage_text(what, language: str = "en", terminal: bool = False) -> str:
    """A job's `Progress.what` in `language`: a summary's or a question's stage, the wait for the
    model, or a Message; anything else as it is."""
    key = STAGES.get(what) or ASK_STAGES.get(what) or ("progress_waiting" if what == WAITING else None)
    if key is not None:
        return text(language, key, terminal)
    return locale_text.words(language, what, language in RIGHT_TO_LEFT and not terminal)


def duration_text(seconds: float, language: str = "en", terminal: bool = False) -> str:
    """'about 40 s', 'environ 3 min 5 s', '約 2 時間 10 分'."""
    hours, minutes, seconds = duration_parts(seconds)
    if hours:
        return text(language, "duration_hours_minutes", terminal, hours=hours, minutes=minutes)
    if minutes:
        return text(language, "duration_minutes_seconds" if seconds else "duration_minutes", terminal,
                    minutes=minutes, seconds=seconds)
    return text(language, "duration_seconds", terminal, seconds=seconds)


def call_text(call: CallProgress, language: str = "en", terminal: bool = False) -> str:
    """Where an engine call is: waiting for its turn, reading its prompt, or writing."""
    if call.phase == WAITING:
        return text(language, "progress_waiting_ahead", terminal, ahead=call.ahead) if call.ahead else \
            text(language, "progress_waiting", terminal)
    if call.phase == READING:
        key = "progress_reading" if call.source else "progress_reading_prompt"  # a source's part: counted by the job
        counts = {"done": f"{call.done:,}", "total": f"{call.total:,}"}
        if call.eta_s is not None and call.done < call.total:
            return text(language, f"{key}_more", terminal, time=duration_text(call.eta_s, language, terminal), **counts)
        return text(language, key, terminal, **counts)
    if call.resumed:  # a call stopped while writing, going on from its written tokens
        return text(language, "progress_writing_resumed", terminal, count=f"{call.done:,}", most=f"{call.total:,}",
                    kept=f"{call.resumed:,}")
    return text(language, "progress_writing_one" if call.done == 1 else "progress_writing_many", terminal,
                count=f"{call.done:,}", most=f"{call.total:,}")


def summary_line(update: SummaryUpdate, language: str = "en") -> str:
    """'reading the document · step 13 of 63 · 2 calls at once · 23,400 / 110,000 tokens of the document (Tekken) ·
    now writing: 120 tokens (at most 300) · about 1 min 20 s left', in `language`."""
    p = update.progress
    parts = [stage_text(p.what, language)]
    if p.total and p.done < p.total:
        parts.append(text(language, "progress_step", done=min(p.done + 1, p.total), total=p.total))
    if update.at_once > 1:
        parts.append(text(language, "progress_calls_at_once", count=update.at_once))
    parts.append(summary_note(update, language))
    if update.eta_s is not None and p.done < p.total:
        parts.append(text(language, "progress_left", time=duration_text(update.eta_s, language)))
    return " · ".join(parts)


def summary_note(update: SummaryUpdate, language: str = "en", terminal: bool = False) -> str:
    """'23,400 / 110,000 tokens of the document (Tekken) · now reading the prompt: 512 / 900 tokens':
    what the command line shows after its bar."""
    note = text(language, "progress_document_tokens", terminal, read=f"{update.tokens_read:,}",
                total=f"{update.tokens_total:,}", tokenizer=update.tokenizer)
    if update.call is None:
        return note
    return note + " · " + text(language, "progress_now", terminal, call=call_text(update.call, language, terminal))
