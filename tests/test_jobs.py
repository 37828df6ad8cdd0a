"""The one long-job runner: progress, Stop, results that say they were stopped, tabs kept apart."""

import threading

import pytest

from app.base.errors import Cancelled, UserError
from app.base.jobs import Job, JobRegistry, Progress


def counting(steps: int, started: threading.Event | None = None, gate: threading.Event | None = None):
    """A plain-function job: reports each step and checks the cancel token between steps."""
    def work(progress, cancel):
        for n in range(steps):
            cancel.raise_if_cancelled()
            progress(Progress(n, steps, "counting"))
            if started is not None:
                started.set()
            if gate is not None:
                gate.wait(5)
        progress(Progress(steps, steps, "counting"))
        return steps
    return work


def test_a_function_job_reports_progress_and_returns_its_value():
    seen = []
    job = Job(counting(3))
    job._report = lambda p, report=job._report: (seen.append(p), report(p))  # watch every report
    outcome = job.run()
    assert outcome.value == 3 and not outcome.stopped
    assert [p.done for p in seen] == [0, 1, 2, 3] and job.progress == Progress(3, 3, "counting")


def test_a_generator_job_streams_updates_and_returns_its_result():
    def work(progress, cancel):
        for n in range(4):
            yield Progress(n + 1, 4, "streaming")
        return "all four"

    job = Job(work)
    outcome = job.run()
    assert outcome == type(outcome)("all four", False)
    assert job.latest == Progress(4, 4, "streaming") and job.progress.done == 4


def test_stop_ends_every_kind_of_job_the_same_way():
    """A raised Cancelled (with or without a partial result) and a result marked stopped all
    give an outcome that says stopped."""
    def raises_with_partial(progress, cancel):
        raise Cancelled(partial="half")

    class Result:
        stopped = True

    assert Job(raises_with_partial).run() == type(Job(raises_with_partial).run())("half", True)
    assert Job(lambda p, c: Result()).run().stopped
    job = Job(counting(1000))
    job.stop()
    assert job.run().stopped and job.progress is None, "a job stopped before it starts does nothing"


def test_a_background_job_is_followed_and_stopped_from_another_thread():
    started, gate = threading.Event(), threading.Event()
    job = Job(counting(50, started, gate)).start()
    assert started.wait(5)
    job.stop()
    gate.set()
    outcome = job.result(timeout=10)
    assert outcome.stopped and outcome.value is None and job.progress.done < 50


def test_watch_yields_changes_and_ends_with_the_job():
    job = Job(counting(5)).start()
    seen = [j.progress for j in job.watch(every_s=0)]
    assert job.finished and seen[-1] == Progress(5, 5, "counting")


def test_an_error_reaches_whoever_asks_for_the_result():
    def fails(progress, cancel):
        raise UserError("notes.pdf: encrypted")

    job = Job(fails).start()
    list(job.watch(every_s=0))
    with pytest.raises(UserError, match="notes.pdf: encrypted"):
        job.result(timeout=5)


def test_stop_in_one_browser_tab_leaves_the_other_tabs_job_running():
    registry = JobRegistry()
    gates = {tab: threading.Event() for tab in ("tab-a", "tab-b")}
    started = {tab: threading.Event() for tab in gates}
    jobs = {tab: registry.start(tab, "download", counting(3, started[tab], gates[tab])) for tab in gates}
    assert all(event.wait(5) for event in started.values())
    assert registry.stop("tab-a", "download") and not registry.stop("tab-a", "summary")
    for gate in gates.values():
        gate.set()
    assert jobs["tab-a"].result(10).stopped
    assert jobs["tab-b"].result(10) == type(jobs["tab-b"].outcome)(3, False)
    assert registry.running("tab-b", "download") is None, "a finished job is not running"


def test_a_new_job_of_the_same_kind_in_a_tab_stops_the_old_one():
    registry = JobRegistry()
    gate, started = threading.Event(), threading.Event()
    old = registry.start("tab", "chat", counting(3, started, gate))
    assert started.wait(5)
    new = registry.start("tab", "chat", counting(1))
    gate.set()
    assert old.result(10).stopped and not new.result(10).stopped
