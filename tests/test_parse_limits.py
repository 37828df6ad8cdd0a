"""Untrusted files are parsed in a child process: page, time and memory limits refused in one line
naming the file and the limit, Stop kills the child, the defaults pass a 500-page PDF."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_documents import ENGLISH, make_pdf

from app.base.config import Settings
from app.base.errors import Cancelled, UserError
from app.base.jobs import CancelToken
from app.documents import reading
from app.documents.reading import read_document
from app.history import History
from app.storage.document_store import DocumentStore

CHILD = b"app.documents.parse_child"


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def make_many_pages(path: Path, pages: int) -> Path:
    """A PDF of `pages` tiny pages with one short line each (cheap to make and to read)."""
    from fpdf import FPDF

    pdf = FPDF(format=(60, 20))
    pdf.set_font("Helvetica", size=8)
    pdf.set_auto_page_break(False)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.text(2, 10, f"Page {n} says hello.")
    pdf.output(str(path))
    return path


def make_blank_pages(path: Path, pages: int) -> Path:
    """A PDF of `pages` empty pages: only a page count over the limit can refuse it early."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=72, height=72)
    writer.write(path)
    return path


def parse_children() -> list[int]:
    """Our child processes that are parsing a document (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and CHILD in cmdline:
            found.append(int(entry.name))
    return found


def test_the_limits_are_settings_with_defaults_that_fit_a_big_document():
    settings = Settings.from_dict({"parse_timeout_s": "30", "parse_memory_mb": "512", "parse_max_pages": "50"})
    assert (settings.parse_timeout_s, settings.parse_memory_mb, settings.parse_max_pages) == (30.0, 512, 50)
    assert (Settings().parse_timeout_s, Settings().parse_memory_mb, Settings().parse_max_pages) == (120.0, 2048, 2000)


def test_over_the_page_limit_is_refused_in_one_line(tmp_path):
    path = make_many_pages(tmp_path / "big.pdf", 5)
    with pytest.raises(UserError) as caught:
        read_document(path, max_pages=3)
    assert one_line(caught) == "big.pdf: 5 pages is over the 3-page limit (Settings → Documents)"
    assert read_document(path, max_pages=5).pages == 5  # at the limit is fine


def test_the_page_limit_is_checked_before_any_text_is_extracted(tmp_path, monkeypatch):
    from pypdf import PageObject

    extracted = []
    monkeypatch.setattr(PageObject, "extract_text", lambda self, *a, **k: extracted.append(self) or "text")
    data = make_many_pages(tmp_path / "big.pdf", 4).read_bytes()
    with pytest.raises(UserError, match=r"^big\.pdf: 4 pages is over the 3-page limit"):
        reading._read_pdf(data, "big.pdf", max_pages=3)  # what the child runs
    assert extracted == []
    assert reading._read_pdf(data, "big.pdf", max_pages=4)[1] == 4 and len(extracted) == 4


def test_over_the_time_limit_is_refused_in_one_line(tmp_path):
    path = make_many_pages(tmp_path / "slow.pdf", 500)
    with pytest.raises(UserError) as caught:
        read_document(path, timeout_s=0.01)  # a child process cannot even start in 10 ms
    assert one_line(caught) == "slow.pdf: reading took longer than 0.01 s (the limit) (Settings → Documents)"
    assert parse_children() == []


def test_over_the_memory_limit_is_refused_in_one_line(tmp_path):
    path = make_pdf(tmp_path / "huge.pdf", [ENGLISH * 8] * 27)
    with pytest.raises(UserError) as caught:
        read_document(path, memory_mb=16)  # below what Python with pypdf already maps
    assert one_line(caught) == "huge.pdf: reading needed more than 16 MiB of memory (the limit) (Settings → Documents)"
    assert read_document(path).pages == 27  # the default limit reads it


def test_cancel_kills_the_child(tmp_path):
    path = make_many_pages(tmp_path / "long.pdf", 1500)
    cancel, outcome = CancelToken(), {}

    def work():
        try:
            outcome["document"] = read_document(path, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - the test looks at what was raised
            outcome["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 120  # a guard against hanging, not a speed requirement
    while not (children := parse_children()) and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(children) == 1, outcome
    os.kill(children[0], signal.SIGSTOP)  # frozen: it cannot finish before the cancel arrives
    cancel.cancel()
    thread.join(120)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), Cancelled), outcome
    assert not Path(f"/proc/{children[0]}").exists()  # killed and reaped
    assert parse_children() == []


def test_a_cancelled_token_starts_no_child(tmp_path):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        read_document(make_pdf(tmp_path / "a.pdf", [ENGLISH]), cancel=cancel)
    assert parse_children() == []


def test_the_defaults_pass_a_500_page_pdf(tmp_path):
    path = make_many_pages(tmp_path / "manual.pdf", 500)
    started = time.monotonic()
    document = read_document(path)
    print(f"500-page PDF read in {time.monotonic() - started:.2f} s")  # reported with -s, never asserted
    assert document.pages == 500
    assert "Page 1 says hello." in document.markdown and "Page 500 says hello." in document.markdown
    assert {c.page_start for c in document.chunks} == set(range(1, 501))


def test_child_errors_keep_their_one_line_messages(tmp_path):
    not_pdf = tmp_path / "fake.pdf"
    not_pdf.write_text("just words, not a PDF at all")
    with pytest.raises(UserError) as caught:
        read_document(not_pdf)
    assert one_line(caught) == "fake.pdf: not a PDF file"
    bad_docx = tmp_path / "report.docx"
    bad_docx.write_bytes(b"PK not really a zip")
    with pytest.raises(UserError) as caught:
        read_document(bad_docx)
    assert one_line(caught) == "report.docx: not a valid .docx (not a zip archive)"


def test_cli_refuses_an_over_limit_pdf_before_the_model_loads(tmp_path, home):
    History(home / "nemo-chat.db").close()
    path = make_blank_pages(tmp_path / "big.pdf", Settings().parse_max_pages + 1)
    result = run_cli("summarize", str(path), "--model", "smollm2", home=home, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].endswith("big.pdf: 2,001 pages is over the 2,000-page limit (Settings → Documents)"), lines
    assert DocumentStore(History(home / "nemo-chat.db")).documents() == []  # refused before anything else ran
