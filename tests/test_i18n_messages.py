"""What the services say, in the page's language: in Chromium with the browser in Arabic (ar-SA) and
Japanese (ja-JP), a refused file, a limit error, the GPU plan and a summary's progress line each show
text in the page's script and no English sentence (file names, numbers and units aside); what
Gradio's status tracker reads to a screen reader when a step completes is in words, not its raw
key `common.complete`."""

from __future__ import annotations

import re

import pytest
from conftest import free_port
from corpora import long_markdown
from test_documents import ENGLISH, make_pdf
from test_i18n import browser  # noqa: F401  the module's Chromium
from test_ui_documents import drop_files

from app.base.errors import UserError
from app.engine.gpu_plan import detected_gpu
from app.faces.i18n import text  # the page's words (values isolated right to left)

BROWSER = {"ar": "ar-SA", "ja": "ja-JP"}
SCRIPT = {"ar": "[\u0600-\u06ff]", "ja": "[\u3040-\u30ff\u4e00-\u9fff]"}
DATA = r"GPU|CPU|NVIDIA|Tekken|K/V|KV|GiB|MiB|MB|PDF|DOCX|HTML|Markdown|llama\.cpp|OCR|f16|q8_0|q4_0|\d+k\b"  # the same everywhere


HEARD = """() => {  // what Gradio's status tracker announces to screen readers (its polite live region)
    window.heard = [];
    new MutationObserver(() => document.querySelectorAll('[aria-live="polite"][aria-atomic="true"]').forEach(
        (region) => { const said = region.textContent.trim(); if (said) window.heard.push(said); }))
        .observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def english_left(shown: str, *names: str) -> list[str]:
    """The Latin words of `shown` once the file names and the data above are taken out."""
    for name in names:
        shown = shown.replace(name, " ")
    return re.findall(r"[A-Za-z]{2,}", re.sub(DATA, " ", shown))


def assert_in_script(shown: str, code: str, *names: str) -> None:
    assert re.search(SCRIPT[code], shown), f"nothing in the {code} script: {shown!r}"
    assert english_left(shown, *names) == [], f"English left in the {code} page: {shown!r}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real app (SmolLM2, a small context, PDFs of one page at most) on loopback."""
    from app.base.config import Settings, save_settings
    from app.ui import build_app, launch

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEMO_CHAT_HOME", str(tmp_path_factory.mktemp("home")))
        save_settings(Settings(model="smollm2", n_ctx=1024, max_tokens=60, temperature=0, parse_max_pages=1))
        demo, style = build_app()
        port = free_port()
        launch(demo, style, port=port, block=False)
        yield demo, f"http://127.0.0.1:{port}/"
        demo.close()


@pytest.fixture(params=list(BROWSER))
def page(request, browser):
    context = browser.new_context(locale=BROWSER[request.param], viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.code = request.param
    yield page
    context.close()


def open_tab(page, key: str) -> None:
    page.wait_for_selector("#message-box")
    page.get_by_role("tab", name=text(page.code, key)).click()


def test_a_refused_file_and_a_limit_error_are_in_the_page_language(served, page, artifacts, tmp_path):
    """A binary file named .txt is refused; a 2-page PDF is over the 1-page limit set in Settings."""
    _, url = served
    code = page.code
    pdf = make_pdf(tmp_path / "two pages.pdf", [ENGLISH, ENGLISH], title="Two pages")
    page.goto(url)
    open_tab(page, "tab_documents")
    page.evaluate(HEARD)
    drop_files(page, [("noise.txt", "text/plain", bytes(range(256)) * 8), (pdf.name, "application/pdf", pdf.read_bytes())])
    status = page.locator("#doc-status", has_text="two pages.pdf")
    status.wait_for(timeout=60_000)
    shown = status.inner_text()
    page.screenshot(path=str(artifacts / f"i18n-refused-{code}.png"))
    refused = text(code, "common_warning", message=UserError("doc_binary", name="noise.txt"))
    over = text(code, "common_warning", message=UserError("doc_over_page_limit", name="two pages.pdf", pages="2",
                                                          max_pages="1"))
    assert refused in shown and over in shown, shown
    assert_in_script(shown, code, "noise.txt", "two pages.pdf")
    page.wait_for_function("done => window.heard.includes(done)", arg=text(code, "common.complete"), timeout=10_000)
    assert not [said for said in page.evaluate("window.heard") if "common." in said]  # no raw key read aloud


def test_the_gpu_plan_is_in_the_page_language(served, page, artifacts):
    _, url = served
    code = page.code
    page.goto(url)
    open_tab(page, "tab_settings")
    plan = page.locator("#gpu-plan")
    plan.wait_for(timeout=30_000)
    reason = text(code, "plan_reason_no_gpu") if detected_gpu() is None else text(code, "plan_all_on_gpu").split("{")[0]
    page.wait_for_function("words => document.querySelector('#gpu-plan').innerText.includes(words)", arg=reason,
                           timeout=30_000)
    plan.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / f"i18n-gpu-plan-{code}.png"))
    shown = plan.inner_text()
    assert_in_script(shown, code, *re.findall(r"\S+\.gguf", shown))  # the model's file name
    assert_in_script(page.locator("#gpu-mode").inner_text(), code)  # "auto" in words too


def test_a_summary_progress_line_is_in_the_page_language(served, page, artifacts):
    demo, url = served
    code = page.code
    page.goto(url)
    open_tab(page, "tab_documents")
    drop_files(page, [("chronicle.md", "text/markdown", long_markdown(1_500).encode())])
    page.locator("#doc-status", has_text="chronicle.md").wait_for(timeout=60_000)
    demo.nemo.ensure_model()
    page.locator("#summarize").focus()
    page.keyboard.press("Enter")
    stage = text(code, "progress_stage_reading")
    now = text(code, "progress_now", call="").strip()
    page.wait_for_function("([stage, now]) => { const line = document.querySelector('#doc-progress').innerText;"
                           " return line.includes(stage) && line.includes(now); }", arg=[stage, now],
                           timeout=120_000, polling=20)
    shown = page.locator("#doc-progress").inner_text()
    page.screenshot(path=str(artifacts / f"i18n-summary-progress-{code}.png"))
    assert_in_script(shown, code, "chronicle.md")
    page.locator("#doc-stop").click()
    page.locator("#doc-progress", has_text=text(code, "documents_resume_hint")).wait_for(timeout=60_000)
