"""Ingestion of generated PDF, DOCX, HTML, Markdown and text files; chunking; the document store;
bad input refused in one line with nothing stored, through the service and the CLI."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from app.storage.document_store import DocumentStore
from app.documents.reading import chunk, read_document, safe_name, split_text
from app.storage.document_store import Chunk
from app.base.errors import UserError
from app.history import History
from app.nemo.tekken import Tekken
from conftest import run_cli

FRENCH = ("Le conseil municipal de Lyon a voté le budget de l'année. Les écoles recevront de nouveaux "
          "ordinateurs et la bibliothèque ouvrira le dimanche. ")
GERMAN = ("Der Stadtrat von Berlin hat den Haushalt für das kommende Jahr beschlossen. Die Schulen "
          "bekommen neue Computer und die Bibliothek öffnet auch am Sonntag. ")
ENGLISH = ("The town council of Leeds approved the budget for next year. Schools will get new computers "
           "and the library will open on Sundays as well. ")
SPANISH = "El ayuntamiento de Sevilla aprobó el presupuesto del año. Las escuelas recibirán ordenadores nuevos. "
CHINESE = "北京市政府今天批准了明年的预算。学校将获得新的电脑，图书馆周日也将开放。"
JAPANESE = "東京都議会は来年度の予算を承認しました。学校には新しいコンピューターが配備され、図書館は日曜日も開館します。"


def make_pdf(path: Path, pages: list[str], title: str = "") -> Path:
    """A text PDF (Helvetica, Latin-1 text), one string per page."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def make_scanned_pdf(path: Path) -> Path:
    """An image-only PDF: a picture of text and no text layer, as a scanner makes."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (800, 300), "white")
    ImageDraw.Draw(image).text((20, 20), "This page was scanned: it is only a picture.", fill="black")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=180)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path: Path, user_password: str = "secret", algorithm: str = "AES-256") -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(path.with_name("plain-" + path.name), [ENGLISH * 3])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm=algorithm)
    writer.write(path)
    return path


def make_docx(path: Path, heading: str, paragraphs: list[str], bullets: list[str], table: list[list[str]]) -> Path:
    from docx import Document as Docx

    doc = Docx()
    doc.add_heading(heading, 0)
    doc.add_heading(heading + " 1", 1)
    for text in paragraphs:
        doc.add_paragraph(text)
    for text in bullets:
        doc.add_paragraph(text, style="List Bullet")
    grid = doc.add_table(rows=len(table), cols=len(table[0]))
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            grid.cell(r, c).text = value
    doc.add_heading(heading + " 2", 1)
    doc.add_paragraph(paragraphs[-1])
    doc.save(str(path))
    return path


def make_html(path: Path, title: str, body: str, encoding: str = "utf-8") -> Path:
    html = (f"<!doctype html><html><head><meta charset='{encoding}'><title>{title}</title>"
            "<script>document.title = 'hacked'; fetch('http://example.com/steal');</script>"
            "<style>p { color: red }</style></head>"
            f"<body onload=\"alert('x')\">{body}<script>alert('again')</script></body></html>")
    path.write_bytes(html.encode(encoding))
    return path


@pytest.fixture()
def store(tmp_path) -> DocumentStore:
    return DocumentStore(History(tmp_path / "db" / "nemo-chat.db"))


# -- formats and languages ---------------------------------------------------------------------


def test_pdf_pages_title_language_and_tokens(tmp_path):
    path = make_pdf(tmp_path / "rapport.pdf", [FRENCH * 12, FRENCH * 6 + "Fin du rapport."], title="Rapport annuel")
    doc = read_document(path)
    assert (doc.kind, doc.title, doc.pages, doc.language) == ("pdf", "Rapport annuel", 2, "fr")
    assert doc.tokens == Tekken.default().count(doc.markdown) > 100
    assert "bibliothèque ouvrira le dimanche" in doc.markdown
    assert str(doc.chunks[0].reference()) == "p. 1" and len(doc.chunks) > 2
    assert str(doc.chunks[-1].reference()) == "p. 2" and doc.chunks[-1].text.endswith("Fin du rapport.")


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_owner_password_only_pdf_opens(tmp_path, algorithm):
    doc = read_document(make_encrypted_pdf(tmp_path / "locked-for-editing.pdf", "", algorithm))
    assert doc.language == "en" and "town council of Leeds" in doc.markdown


@pytest.mark.parametrize("language, text", [("es", SPANISH), ("zh", CHINESE)])
def test_docx_keeps_headings_lists_and_tables(tmp_path, language, text):
    path = make_docx(tmp_path / f"informe-{language}.docx", "Informe", [text * 6, text * 3],
                     ["primer punto", "segundo punto"], [["Región", "Ventas"], ["Norte", "100"]])
    doc = read_document(path)
    assert (doc.kind, doc.title, doc.pages, doc.language) == ("docx", "Informe", None, language)
    md = doc.markdown
    assert md.startswith("# Informe") and "\n# Informe 1\n" in md and "\n# Informe 2\n" in md
    assert "- primer punto\n- segundo punto" in md
    assert "| Región | Ventas |\n| --- | --- |\n| Norte | 100 |" in md
    assert doc.chunks[0].text.startswith("# Informe\n\n# Informe 1\n\n") and str(doc.chunks[0].reference()) == "§ Informe 1"


@pytest.mark.parametrize("language, text, encoding", [("de", GERMAN, "iso-8859-1"), ("ja", JAPANESE, "shift_jis")])
def test_html_structure_kept_scripts_dropped(tmp_path, language, text, encoding):
    body = (f"<h1>Bericht</h1><p>{text}</p><h2>Teil</h2><ol><li>eins</li><li>zwei</li></ol>"
            "<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>"
            "<a href=\"javascript:alert('x')\">Link</a><iframe src='http://example.com'></iframe>")
    doc = read_document(make_html(tmp_path / "seite.html", "Bericht", body, encoding))
    assert (doc.kind, doc.title, doc.language) == ("html", "Bericht", language)
    md = doc.markdown
    assert md.startswith("# Bericht") and "## Teil" in md and "1. eins\n2. zwei" in md and "| A | B |" in md
    assert text.strip() in md
    for trace in ("alert", "hacked", "example.com", "javascript", "color: red"):
        assert trace not in md


def test_markdown_and_text_in_other_encodings(tmp_path):
    markdown = tmp_path / "notes.md"
    markdown.write_bytes(("# Notes de réunion\n\n" + FRENCH).encode("utf-16"))
    doc = read_document(markdown)
    assert (doc.title, doc.language, doc.chunks[0].section) == ("Notes de réunion", "fr", "Notes de réunion")
    text = tmp_path / "brief.txt"
    text.write_bytes((GERMAN * 3).encode("cp1252"))
    doc = read_document(text)
    assert (doc.title, doc.language) == ("brief", "de") and "für das kommende Jahr" in doc.markdown


# -- chunking ------------------------------------------------------------------------------------


def test_split_text_cuts_only_between_words():
    count = Tekken.default().count
    text = (ENGLISH * 30) + "\n\n" + (CHINESE * 20) + "\n\n" + " ".join(["supercalifragilistic"] * 200)
    pieces = split_text(text, 60, count)
    assert "".join(pieces) == text
    assert all(count(p) <= 60 for p in pieces)
    words = set(text.split())
    for piece in pieces:
        if re.search("[\u4e00-\u9fff]", piece):
            assert piece.strip().endswith("。"), "Chinese is cut after a sentence"
        else:
            assert set(piece.split()) <= words, "a cut fell inside a word"


def test_chunks_prefer_sections_and_carry_pages():
    count = Tekken.default().count
    pieces = [Chunk(ENGLISH * 2, page_start=1, page_end=1, section="A"),
              Chunk(ENGLISH * 2, page_start=2, page_end=2, section="A"),
              Chunk(GERMAN * 2, page_start=2, page_end=2, section="B"),
              Chunk(GERMAN * 40, page_start=3, page_end=3, section="B")]
    chunks = chunk(pieces, 150, count)
    assert [c.section for c in chunks][:2] == ["A", "B"], "section B starts a new chunk"
    assert (chunks[0].page_start, chunks[0].page_end) == (1, 2) and str(chunks[0].reference()) == "pp. 1-2"
    assert all(c.tokens <= 150 + 3 for c in chunks) and len(chunks) > 4
    assert "".join("".join(c.text.split()) for c in chunks) == "".join("".join(p.text.split()) for p in pieces)


def test_an_odd_name_is_stored_as_its_last_component(tmp_path, store):
    path = tmp_path / "upload.bin"
    path.write_text("# Notizen\n\n" + GERMAN, encoding="utf-8")
    document = read_document(path, name="../../home/évé/\u202e名前 notes.md")
    document_id, _ = store.add(document)
    assert store.document(document_id)["file_name"] == "名前 notes.md" and document.kind == "markdown"


def test_safe_names():
    assert safe_name("../../etc/passwd.txt") == "passwd.txt"
    assert safe_name("C:\\Users\\me\\notes.md") == "notes.md"
    assert safe_name("re\u0301sume\u0301 \u202eexe.txt") == "résumé exe.txt"
    assert safe_name("名前\n.pdf") == "名前.pdf"
    assert safe_name("..") == "document" and len(safe_name("a" * 500 + ".pdf")) == 200


# -- the store -----------------------------------------------------------------------------------


def test_store_keeps_each_document_once_and_deletes_everything_made_from_it(tmp_path, store):
    path = make_pdf(tmp_path / "a.pdf", [ENGLISH * 12, ENGLISH])
    first, created = store.add(read_document(path))
    copy = tmp_path / "same bytes, other name.pdf"
    copy.write_bytes(path.read_bytes())
    again, created_again = store.add(read_document(copy))
    assert created and not created_again and again == first and len(store.documents()) == 1
    listed = store.documents()[0]
    assert listed["file_name"] == "a.pdf" and listed["pages"] == 2 and "markdown" not in listed
    assert [str(c.reference()) for c in store.chunks(first)] == ["p. 1", "p. 1", "p. 2"]

    sha = store.document(first)["sha256"]
    store.put_cached("k1", "summary", "partial", source=sha)
    store.put_cached("k2", "translation", "other document", source="another sha")
    store.save_summary(first, "m.gguf", {"length": "short"}, "Summary.", 2, 2)
    store.save_summary(first, "m.gguf", {"length": "short"}, "Better summary.", 2, 2)
    assert [s["text"] for s in store.summaries(first)] == ["Better summary."]
    store.delete(first)
    assert store.documents() == [] and store.chunks(first) == [] and store.summaries(first) == []
    assert store.cached("k1") is None and store.cached("k2") == "other document"
    with pytest.raises(UserError, match="not found"):
        store.document(first)


# -- bad input -------------------------------------------------------------------------------------


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            zeros = b"\0" * 2**20
            for _ in range(300):
                member.write(zeros)
    return path


def _bad_files(tmp: Path) -> list[tuple[Path, str]]:
    """(file, words its one-line error must contain) for every kind of bad input."""
    tmp.mkdir(exist_ok=True)
    empty = tmp / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp / "photo.txt"
    binary.write_bytes(bytes(range(256)) * 64)
    huge = tmp / "huge.md"
    with huge.open("wb") as handle:
        handle.truncate(101 * 2**20)  # sparse: no disk used, but over the 100 MB limit
    not_zip = tmp / "letter.docx"
    not_zip.write_text("this is not a Word file")
    not_word = tmp / "archive.docx"
    with zipfile.ZipFile(not_word, "w") as archive:
        archive.writestr("readme.txt", "a zip, but no Word document")
    scripts_only = tmp / "scripts.html"
    scripts_only.write_text("<html><head><script>alert(1)</script></head><body><script>alert(2)</script></body></html>")
    odd = tmp / "ﾒﾓ \u202e résumé.pdf"
    odd.write_bytes(b"%PDF-1.4 then nothing a PDF reader could use")
    return [
        (make_encrypted_pdf(tmp / "locked.pdf"), "encrypted"),
        (make_scanned_pdf(tmp / "scan.pdf"), "no text layer, OCR not supported"),
        (empty, "empty"),
        (binary, "binary data"),
        (huge, "over the 100 MB upload limit"),
        (not_zip, "not a zip archive"),
        (_zip_bomb(tmp / "bomb.docx"), "zip bomb"),
        (not_word, "not a Word document"),
        (scripts_only, "no text found"),
        (odd, "cannot read this PDF"),
        (tmp / "program.exe", "unsupported file type .exe"),
    ]


def test_bad_input_gets_one_line_and_nothing_is_stored(tmp_path, store):
    for path, words in _bad_files(tmp_path / "bad"):
        with pytest.raises(UserError) as caught:
            read_document(path)
        message = str(caught.value)
        assert words in message and "\n" not in message, message
        assert message.startswith(safe_name(path.name) + ":"), message


def test_over_the_limit_is_checked_before_reading(tmp_path):
    path = make_pdf(tmp_path / "a.pdf", [ENGLISH])
    with pytest.raises(UserError, match="a.pdf: .* over the 0 MB upload limit"):
        read_document(path, max_bytes=100)


def test_bad_input_through_the_cli(tmp_path, home):
    History(home / "nemo-chat.db").close()  # an existing database that must stay as it is
    for path, words in _bad_files(tmp_path / "bad"):
        result = run_cli("summarize", str(path), "--model", "smollm2", home=home, timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (path.name, result.stderr)
        assert words in lines[0] and safe_name(path.name) in lines[0] and "Traceback" not in result.stderr
    assert DocumentStore(History(home / "nemo-chat.db")).documents() == []
