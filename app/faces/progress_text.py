"""The progress lines of long jobs (summaries, translations) in the page's language, worded from the
services' structured fields with the locale files; in English they read as the services' own lines
(`summarize.format_progress`, `CallProgress.describe`, `engine_calls.duration`), which the CLI keeps."""

from __future__ import annotations

from app.base.jobs import WAITING
from app.faces.i18n import text
from app.services.engine_calls import READING, CallProgress, duration_parts
from app.services import summarize as job
from app.services.summarize import SummaryUpdate

STAGES = {job.STARTING: "progress_stage_starting", job.READING_DOCUMENT: "progress_stage_reading",
          job.COMBINING_SUMMARIES: "progress_stage_combining", job.WRITING_SUMMARY: "progress_stage_writing",
          job.STOPPED: "progress_stage_stopped", job.DONE: "progress_stage_done"}  # a summary's stages: locale keys


def duration_text(seconds: float, language: str = "en") -> str:
    """'about 40 s', 'environ 3 min 5 s', '約 2 時間 10 分'."""
    hours, minutes, seconds = duration_parts(seconds)
    if hours:
        return text(language, "duration_hours_minutes", hours=hours, minutes=minutes)
    if minutes:
        return text(language, "duration_minutes_seconds" if seconds else "duration_minutes",
                    minutes=minutes, seconds=seconds)
    return text(language, "duration_seconds", seconds=seconds)


def call_text(call: CallProgress, language: str = "en") -> str:
    """Where an engine call is: waiting for its turn, reading its prompt, or writing."""
    if call.phase == WAITING:
        return text(language, "progress_waiting_ahead", ahead=call.ahead) if call.ahead else \
            text(language, "progress_waiting")
    if call.phase == READING:
        key = "progress_reading" if call.source else "progress_reading_prompt"  # a source's part: counted by the job
        counts = {"done": f"{call.done:,}", "total": f"{call.total:,}"}
        if call.eta_s is not None and call.done < call.total:
            return text(language, f"{key}_more", time=duration_text(call.eta_s, language), **counts)
        return text(language, key, **counts)
    if call.resumed:  # a call stopped while writing, going on from its written tokens
        return text(language, "progress_writing_resumed", count=f"{call.done:,}", most=f"{call.total:,}",
                    kept=f"{call.resumed:,}")
    return text(language, "progress_writing_one" if call.done == 1 else "progress_writing_many",
                count=f"{call.done:,}", most=f"{call.total:,}")


def summary_line(update: SummaryUpdate, language: str = "en") -> str:
    """'reading the document · step 13 of 63 · 2 calls at once · 23,400 / 110,000 tokens of the document (Tekken) ·
    now writing: 120 tokens (at most 300) · about 1 min 20 s left', in `language`."""
    p = update.progress
    parts = [text(language, STAGES[p.what]) if p.what in STAGES else p.what]
    if p.total and p.done < p.total:
        parts.append(text(language, "progress_step", done=min(p.done + 1, p.total), total=p.total))
    if update.at_once > 1:
        parts.append(text(language, "progress_calls_at_once", count=update.at_once))
    parts.append(text(language, "progress_document_tokens", read=f"{update.tokens_read:,}",
                      total=f"{update.tokens_total:,}", tokenizer=update.tokenizer))
    if update.call is not None:
        parts.append(text(language, "progress_now", call=call_text(update.call, language)))
    if update.eta_s is not None and p.done < p.total:
        parts.append(text(language, "progress_left", time=duration_text(update.eta_s, language)))
    return " · ".join(parts)
