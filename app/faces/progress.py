"""The command line's one progress display: a job's progress on stderr, with rate and ETA (rich).

On a terminal the bar is redrawn as the job moves; elsewhere (logs, pipes) only the final state
is printed. Ctrl+C stops the job through its cancel token, waits for it to save what it did,
then ends the command.
"""

from __future__ import annotations

from typing import Callable

from rich import filesize
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn,
                           TextColumn, TimeRemainingColumn, TransferSpeedColumn)
from rich.text import Text

from app.base.jobs import Job, Outcome
from app.faces.locale_text import terminal_language, terminal_text
from app.faces.progress_text import stage_text


class RateColumn(ProgressColumn):
    """Units per second, e.g. '3.2 calls/s' (`unit` in words)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else "", style="progress.data.speed")


def follow(job: Job, title: str, unit: str = "steps", describe: Callable[[Job], str] | None = None,
           until: Callable[[Job], bool] | None = None) -> Outcome | None:
    """Run `job` in the background and show it until it ends; returns its outcome.

    `unit` is what Progress counts: "bytes" (sizes and transfer speed), "tokens", "calls", "parts" or
    "steps", worded in the terminal's language; `describe` adds a
    note of the job's own (e.g. tokens read) after the bar. With `until`, the bar is shown only
    until `until(job)` holds (e.g. a reply's first text) and None is returned: the job goes on."""
    console = Console(stderr=True)
    job.start()
    try:
        if console.is_terminal:
            if not _live_bar(job, title, unit, describe, until, console):
                return None
        else:
            for _ in job.watch(0.2):
                if until is not None and until(job):
                    return None
    except KeyboardInterrupt:
        job.stop()
        job.result()  # let it save what it did
        raise
    outcome = job.result()
    if not console.is_terminal and until is None and job.progress is not None:
        console.print(_final_line(job, title, unit, describe), highlight=False, soft_wrap=True)
    return outcome


def _live_bar(job: Job, title: str, unit: str, describe, until, console: Console) -> bool:
    """Redraw a bar until the job ends (True) or `until` holds (False)."""
    counts = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else \
        [MofNCompleteColumn(), RateColumn(terminal_text(f"progress_unit_{unit}"))]
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), *counts,
                   TimeRemainingColumn(compact=True, elapsed_when_finished=True), TextColumn("{task.fields[note]}"),
                   console=console, refresh_per_second=5, transient=until is not None)
    task = bar.add_task(title, total=None, note="")
    with bar:
        for _ in job.watch(0.2):
            if until is not None and until(job):
                return False
            progress = job.progress
            if progress is not None:
                bar.update(task, completed=progress.done, total=max(progress.total, progress.done) or None,
                           description=f"{title} · {stage_text(progress.what, terminal_language(), True)}"
                           if progress.what else title,
                           note=describe(job) if describe else "")
    return True


def _final_line(job: Job, title: str, unit: str, describe) -> str:
    """One line for logs and pipes: 'lettre.pdf · done: 3/3 calls in 12.4 s · 2,100 / 2,100 tokens read' or '… 7.5 GB of 7.5 GB in …'."""
    p = job.progress
    amount = (terminal_text("progress_bytes_of", done=filesize.decimal(p.done), total=filesize.decimal(p.total))
              if unit == "bytes" else f"{p.done}/{p.total} {terminal_text(f'progress_unit_{unit}')}")
    note = describe(job) if describe else ""
    line = terminal_text("progress_final", title=title, stage=stage_text(p.what, terminal_language(), True),
                         amount=amount, seconds=f"{job.seconds:.1f}")
    return line + (f" · {note}" if note else "")
