"""Long jobs, one way: progress, one cancel token, a result that says whether it was stopped.

A job's work is a plain function `work(progress, cancel)`; it calls `progress(Progress(...))` and
checks `cancel` between small steps (a stop raises `Cancelled`). Work that streams returns a
generator instead: each item it yields is the job's latest update (an item with a `progress`
attribute also moves the progress), and the generator's return value is the result.

`Job.run()` runs in the calling thread (tests, scripts); `Job.start()` runs in a thread and
`Job.watch()` lets a face follow it at a steady pace (the UI's one throttle). `JobRegistry` keeps
the running jobs of each browser tab, so Stop in one tab stops that tab's job only.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from types import GeneratorType
from typing import Any, Callable, Iterator

from app.base.errors import Cancelled
from app.base.messages import Message

WATCH_EVERY_S = 0.08  # faces show a running job at most this often


@dataclass(frozen=True)
class Progress:
    """How far a job is: `done` of `total` units (tokens, calls, bytes), and what it is doing."""

    done: int
    total: int
    what: str | Message = ""  # a stage's name, or a Message the faces word
    ahead: int = 0  # with what == WAITING: how many requests are before this one


    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


ProgressCallback = Callable[[Progress], None]
WAITING = "waiting for the model"  # Progress.what while a request waits for its turn


def no_progress(_: Progress) -> None:
    """The progress callback that ignores everything."""


class CancelToken:
    """Set once from any thread; checked by the job between small steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._children: list[CancelToken] = []
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            children, self._children = self._children, []
        for child in children:
            child.cancel()

    def child(self) -> "CancelToken":
        """A token for one step of the work: cancelled on its own, or with this one."""
        token = CancelToken()
        with self._lock:
            if not self._event.is_set():
                self._children.append(token)
                return token
        token.cancel()
        return token

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or `timeout` seconds have passed (False)."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class Outcome:
    """How a job ended: its result (a partial one when stopped, if the work gave one)."""

    value: Any
    stopped: bool


Work = Callable[[ProgressCallback, CancelToken], Any]


def side_by_side(steps: list[Callable[[], Iterator]], width: int, cancel: CancelToken) -> Iterator:
    """Run independent streaming steps (each a generator: updates, then its result) in threads, up
    to `width` at a time; yield their updates as they come and return their results in order. A
    failing step stops the others (`cancel`) and its error is raised here once they have ended; so
    is Cancelled after a Stop. With `width` 1 the steps run one after another in this thread."""
    if width <= 1:
        in_order = []
        for step in steps:
            in_order.append((yield from step()))
        return in_order
    events: queue.SimpleQueue = queue.SimpleQueue()
    results: list[Any] = [None] * len(steps)

    def run(index: int) -> None:
        try:
            results[index] = _drain_to(events, steps[index]())
            events.put((_DONE, index))
        except BaseException as exc:  # handed to the caller's thread
            events.put((_FAILED, exc))

    waiting, running, failure = list(range(len(steps))), 0, None
    try:
        while waiting or running:
            while waiting and running < width and failure is None:
                threading.Thread(target=run, args=(waiting.pop(0),), daemon=True, name="nemo-chat-step").start()
                running += 1
            kind, item = events.get()
            if kind is _UPDATE:
                if failure is None:
                    yield item
                continue
            running -= 1
            if kind is _FAILED and failure is None:
                failure = item
                cancel.cancel()
                waiting.clear()
    finally:
        if running:  # closed early: stop the steps still running and let them end
            cancel.cancel()
            while running:
                running -= events.get()[0] in (_DONE, _FAILED)
    if failure is not None:
        raise failure
    return results


_UPDATE, _DONE, _FAILED = "update", "done", "failed"


def _drain_to(events: "queue.SimpleQueue", step: Iterator) -> Any:
    """Drain a generator in a worker thread: its updates go to `events`; return its result."""
    try:
        while True:
            events.put((_UPDATE, next(step)))
    except StopIteration as end:
        return end.value


class Job:
    """One run of `work`, followed from any thread."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.cancel = CancelToken()
        self.progress: Progress | None = None
        self.latest: Any = None  # the last item a streaming job yielded
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self._version = 0
        self._changed = threading.Condition()
        self._started_at = self._ended_at = None

    @property
    def seconds(self) -> float:
        """How long the job has run (so far, or in all once finished)."""
        if self._started_at is None:
            return 0.0
        return (self._ended_at or time.monotonic()) - self._started_at

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        """Run to the end in this thread; errors other than a stop propagate."""
        self._started_at = time.monotonic()
        try:
            value = self.work(self._report, self.cancel)
            if isinstance(value, GeneratorType):
                value = self._drain(value)
            outcome = Outcome(value, self.cancel.cancelled or bool(getattr(value, "stopped", False)))
        except Cancelled as stop:
            outcome = Outcome(stop.partial, True)
        except BaseException as exc:
            self._ended_at = time.monotonic()
            self.error = exc
            self._notify()
            raise
        self._ended_at = time.monotonic()
        self.outcome = outcome
        self._notify()
        return outcome

    def start(self) -> "Job":
        """Run in a daemon thread; follow it with `watch()`, end it with `result()`."""
        threading.Thread(target=self._run_quietly, daemon=True, name="nemo-chat-job").start()
        return self

    def stop(self) -> None:
        self.cancel.cancel()

    @property
    def finished(self) -> bool:
        return self.outcome is not None or self.error is not None

    def watch(self, every_s: float = WATCH_EVERY_S) -> Iterator["Job"]:
        """Yield this job when it has changed, at most once per `every_s`, and once when it ends."""
        seen = -1
        while not self.finished:
            with self._changed:
                self._changed.wait_for(lambda: self._version != seen or self.finished, timeout=1.0)
                changed, seen = self._version != seen, self._version
            if self.finished:
                break
            if changed:
                yield self
                time.sleep(every_s)
        yield self

    def result(self, timeout: float | None = None) -> Outcome:
        """The outcome once finished; re-raises the job's error."""
        with self._changed:
            self._changed.wait_for(lambda: self.finished, timeout)
        if self.error is not None:
            raise self.error
        if self.outcome is None:
            raise TimeoutError("the job is still running")
        return self.outcome

    # -- inside ----------------------------------------------------------------------------------
    def _run_quietly(self) -> None:
        try:
            self.run()
        except BaseException:  # kept in self.error; result() raises it for the face to show
            pass

    def _drain(self, items) -> Any:
        try:
            while True:
                item = next(items)
                self.latest = item
                progress = item if isinstance(item, Progress) else getattr(item, "progress", None)
                if isinstance(progress, Progress):
                    self.progress = progress
                self._notify()
        except StopIteration as end:
            return end.value
        finally:
            items.close()

    def _report(self, progress: Progress) -> None:
        self.progress = progress
        self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()


class JobRegistry:
    """The running jobs of each browser tab (its session), one per kind (chat, summary, …)."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], Job] = {}
        self._lock = threading.Lock()

    def start(self, session: str, kind: str, work: Work) -> Job:
        """Start a job for this tab; a job of the same kind still running there is stopped first."""
        job = Job(work)
        with self._lock:
            previous = self._jobs.get((session, kind))
            self._jobs[(session, kind)] = job
        if previous is not None:
            previous.stop()
        return job.start()

    def stop(self, session: str, kind: str) -> bool:
        """Stop this tab's job of this kind; False when none was running."""
        with self._lock:
            job = self._jobs.get((session, kind))
        if job is None or job.finished:
            return False
        job.stop()
        return True

    def of_kind(self, kind: str) -> list[Job]:
        """The jobs of this kind in every tab, running or finished."""
        with self._lock:
            return [job for (_, k), job in self._jobs.items() if k == kind]

    def running(self, session: str, kind: str) -> Job | None:
        with self._lock:
            job = self._jobs.get((session, kind))
        return job if job is not None and not job.finished else None

    def forget(self, session: str) -> None:
        """A browser tab went away: stop its jobs and forget them."""
        with self._lock:
            gone = [key for key in self._jobs if key[0] == session]
            jobs = [self._jobs.pop(key) for key in gone]
        for job in jobs:
            job.stop()

    def stop_all(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop()
