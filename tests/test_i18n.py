"""The interface in NeMo's 11 languages: every locale complete, no UI text written outside the
locale files in a converted face, the progress lines of long jobs worded in each language, and the
page rendered in each language in Chromium (Arabic laid out right to left, measured), with the
Settings choice overriding the browser's language."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, free_port

from app.base.jobs import WAITING, Progress
from app.faces.i18n import (
    CATALOG,
    LANGUAGES,
    RIGHT_TO_LEFT,
    best_language,
    t,
    text,
)
from app.faces.progress_text import STAGES, call_text, duration_text, summary_line
from app.services.engine_calls import READING, WRITING, CallProgress
from app.services.summarize import SummaryUpdate

ROOT = Path(__file__).resolve().parent.parent
# The face modules whose every UI string comes from the locale files.
CONVERTED_FACES = ["app/ui.py", "app/faces/ui_chat.py", "app/faces/chat_view.py", "app/faces/ui_engine.py",
                   "app/faces/ui_api.py", "app/faces/language_note.py", "app/faces/ui_convert.py",
                   "app/faces/ui_history.py", "app/faces/chat_window.py", "app/faces/ui_documents.py",
                   "app/faces/ui_translate.py", "app/faces/ui_models.py", "app/faces/progress_text.py",
                   "app/faces/ui_tools.py", "app/faces/ui_ask.py"]
BROWSER_LOCALES = {"en": "en-US", "fr": "fr-FR", "de": "de-DE", "es": "es-ES", "it": "it-IT", "pt": "pt-BR",
                   "zh": "zh-CN", "ja": "ja-JP", "ko": "ko-KR", "ar": "ar-EG", "hi": "hi-IN"}
VIEWPORT = {"width": 1280, "height": 800}


# -- the locale files ---------------------------------------------------------------------------
def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("code", sorted(LANGUAGES))
def test_every_locale_has_every_key_with_text_and_the_same_placeholders(code):
    english, locale = CATALOG["en"], CATALOG[code]
    assert sorted(set(english) - set(locale)) == [], f"{code}.json lacks these keys"
    assert sorted(set(locale) - set(english)) == [], f"{code}.json has keys en.json does not"
    empty = [key for key, value in locale.items() if not isinstance(value, str) or not value.strip()]
    assert empty == [], f"{code}.json: empty values"
    changed = [key for key in english if _fields(english[key]) != _fields(locale[key])]
    assert changed == [], f"{code}.json: placeholders differ from en.json"


def test_text_fills_values_and_the_language_comes_from_accept_language():
    assert text("de", "convert_done", path="/m/x.gguf", outtype="q8_0", size="1.20", seconds="7").startswith(
        "✅ `/m/x.gguf` geschrieben (q8_0, 1.20 GB, 7 s)")
    assert text("sv", "convert_start") == "Convert"  # not one of ours: English
    assert best_language("ar-EG,en;q=0.5") == "ar"
    assert best_language("sv-SE,it;q=0.8,fr;q=0.9") == "fr"
    assert best_language("zh-TW") == "zh"
    assert best_language("sv, nb;q=0.5") == best_language("") == "en"
    with pytest.raises(KeyError):
        t("no_such_key")


# -- no UI text outside the locale files --------------------------------------------------------
TEXT_KEYWORDS = {"label", "placeholder", "info", "title", "headers"}
SHOWS_VALUE = {"Button", "DownloadButton", "UploadButton", "ClearButton", "Markdown", "HTML"}  # value is text
LABEL_FIRST = {"Tab", "TabItem", "Accordion"}
CHOICES_FIRST = {"Dropdown", "Radio", "CheckboxGroup"}
NOTICES = {"Info", "Warning", "Error"}
TRANSLATORS = {"t", "say", "text"}  # their string arguments are keys
SHOWN_KEYWORDS = TEXT_KEYWORDS | {"value", "choices"}  # what a call inside a returned value shows
NAMES = r"nemo-\S*|\w+://\S+|\b[KMGT]i?B\b"  # the app's and models' names, addresses, units: the same everywhere


def _has_words(value: str) -> bool:
    """Text a person reads: two letters in a row once HTML tags, {fields}, names and URLs are removed."""
    return re.search(r"[^\W\d_]{2}", re.sub(rf"<[^>]*>|\{{[^}}]*\}}|{NAMES}", " ", value)) is not None


def _strings(node: ast.AST, constants: dict[str, ast.AST]):
    """(line, text) of the string literals in an expression: module constants named in it followed,
    an f-string as one text with {} for its fields; skipped: the keys given to t/say/text, dict keys
    and subscripts (`row["title"]`), and keywords of calls other than the text ones (`label=`...)."""
    if isinstance(node, ast.Name) and node.id in constants:
        yield from _strings(constants[node.id], constants)
    elif isinstance(node, ast.JoinedStr):
        yield node.lineno, "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    elif isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name not in TRANSLATORS:
            for child in [*node.args, *(k.value for k in node.keywords if k.arg in SHOWN_KEYWORDS)]:
                yield from _strings(child, constants)
    elif isinstance(node, ast.Subscript):
        yield from _strings(node.value, constants)
    elif isinstance(node, ast.Dict):
        for value in node.values:
            yield from _strings(value, constants)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.lineno, node.value
    else:
        for child in ast.iter_child_nodes(node):
            yield from _strings(child, constants)


def _choice_labels(node: ast.AST, constants: dict[str, ast.AST]) -> list[ast.AST]:
    """What a person reads of `choices`: the label of each (label, value) pair, or the bare value."""
    if isinstance(node, ast.Name) and node.id in constants:
        return _choice_labels(constants[node.id], constants)
    if not isinstance(node, (ast.List, ast.Tuple)):
        return []
    return [item.elts[0] if isinstance(item, ast.Tuple) and item.elts else item for item in node.elts]


def _gradio_name(call: ast.Call) -> str | None:
    """'Button' for gr.Button(...), None for calls that are not gr.X(...)."""
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "gr":
        return func.attr
    return None


def ui_text_in(source: str) -> list[tuple[int, str]]:
    """(line, text) of every UI string written in code: component labels, placeholders, infos,
    titles, choices, headers and shown values; gr.update texts; gr.Info/Warning/Error; the
    strings a handler returns or yields (locale keys, the app's name, URLs and units left out)."""
    tree = ast.parse(source)
    constants = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        shown: list[ast.AST] = []
        if isinstance(node, ast.Call) and (name := _gradio_name(node)):
            shown += [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS]
            choices = [k.value for k in node.keywords if k.arg == "choices"]
            if node.args and name in CHOICES_FIRST:
                choices.append(node.args[0])
            shown += [label for given in choices for label in _choice_labels(given, constants)]
            if name in SHOWS_VALUE:
                shown += [k.value for k in node.keywords if k.arg == "value"]
            if node.args and name in SHOWS_VALUE | LABEL_FIRST | NOTICES:
                shown.append(node.args[0])
        elif isinstance(node, (ast.Return, ast.Yield)) and node.value is not None:
            shown.append(node.value)
        found += [(line, value) for expr in shown for line, value in _strings(expr, constants)
                  if _has_words(value) and value not in CATALOG["en"]]  # a locale key is no text
    return sorted(set(found))


def test_the_scan_finds_ui_text_written_in_code():
    sample = '''
HEADERS = ["Name", "Size"]
def face(request):
    with gr.Tab("Chat"):
        gr.Button("Send", elem_id="send", variant="primary")
        gr.Dropdown([("Detect the language", "auto"), (t("x"), "fr")], value="fr", label=t("translate_to"))
        gr.Dataframe(headers=HEADERS, value=[["a", "b"]])
        gr.Textbox(placeholder=f"Up to {n} MB", value="typed by the user")
        gr.Markdown(t("convert_help"))
    gr.Info("Saved")
    def run():
        if x:
            return say(request, "convert_stopped"), gr.update(label=f"Found {n} files")
        yield "<div class='p'><progress></progress> starting…</div>", "", "⚠️", None
    gr.Textbox(placeholder="http://127.0.0.1:8000/v1", label=t("engine_url"))
    return launch(demo, server_name="localhost"), row["title"], gr.update(value={"text": "", "files": []})
'''
    assert ui_text_in(sample) == [
        (2, "Name"), (2, "Size"), (4, "Chat"), (5, "Send"), (6, "Detect the language"), (8, "Up to {} MB"),
        (10, "Saved"), (13, "Found {} files"), (14, "<div class='p'><progress></progress> starting…</div>")]


@pytest.mark.parametrize("module", CONVERTED_FACES)
def test_converted_faces_write_no_ui_text_outside_the_locale_files(module):
    found = ui_text_in((ROOT / module).read_text(encoding="utf-8"))
    assert found == [], f"{module}: UI text written in code, not taken from app/faces/locales (line, text)"


# -- the progress lines of long jobs ------------------------------------------------------------
CALLS = [CallProgress(WAITING), CallProgress(WAITING, ahead=2), CallProgress(READING, 512, 1800),
         CallProgress(READING, 512, 1800, eta_s=185), CallProgress(READING, 1800, 1800, eta_s=0.0),
         CallProgress(READING, 512, 1800, source=1200), CallProgress(READING, 512, 1800, eta_s=185, source=1200),
         CallProgress(WRITING, 1, 300), CallProgress(WRITING, 1200, 3000), CallProgress(WRITING, 1200, 3000, resumed=40)]
WRITING_CALL = CallProgress(WRITING, 12, 150)
ENGLISH = ["writing", "reading", "waiting", "left", "about", "at once", "of the document", "step", "ahead",
           "at most", "more", "starting", "stopped", "done", "translating"]


def summary_update(what="reading the document", done=3, total=11, at_once=2, call=WRITING_CALL,
                   eta_s: float | None = 40.2) -> SummaryUpdate:
    return SummaryUpdate(Progress(done, total, what), 1200, 5000, eta_s, call=call, at_once=at_once)


def test_progress_lines_in_english():
    """The services give the fields; the locale files word them, English included."""
    assert [call_text(call, "en") for call in CALLS] == [
        "waiting for the model", "waiting for the model (2 ahead)", "reading the prompt: 512 / 1,800 tokens",
        "reading the prompt: 512 / 1,800 tokens, about 3 min 5 s more", "reading the prompt: 1,800 / 1,800 tokens",
        "reading the prompt", "reading the prompt, about 3 min 5 s more",  # a part of the job's document: the job counts it
        "writing: 1 token (at most 300)", "writing: 1,200 tokens (at most 3,000)",
        "writing: 1,200 tokens (at most 3,000), going on from the 40 written before the Stop"]
    seconds = [0, 59.4, 59.6, 185, 7300]
    assert [duration_text(s, "en") for s in seconds] == ["about 0 s", "about 59 s", "about 1 min", "about 3 min 5 s",
                                                         "about 2 h 1 min"]
    assert summary_line(summary_update(), "en") == (
        "reading the document · step 4 of 11 · 2 calls at once · 1,200 / 5,000 tokens of the document (Tekken) · "
        "now writing: 12 tokens (at most 150) · about 40 s left")
    assert summary_line(summary_update("done", 11, 11, 1, None, None), "en") == \
        "done · 1,200 / 5,000 tokens of the document (Tekken)"


def test_progress_lines_in_french_and_japanese():
    writing = summary_update()
    assert summary_line(writing, "fr") == ("lecture du document · étape 4 sur 11 · 2 appels à la fois · "
                                           "1,200 / 5,000 jetons du document (Tekken) · en cours : écriture, 12 jetons écrits "
                                           "(au plus 150) · reste environ 40 s")
    assert summary_line(writing, "ja") == ("文書を読み込み中 · ステップ 4/11 · 2 件の呼び出しを同時実行中 · 文書の 1,200 / 5,000 "
                                           "トークン（Tekken） · 現在：書き込み中、12 トークン（最大 150） · 残り 約 40 秒")
    waiting = summary_update("combining summaries", call=CallProgress(WAITING, ahead=2), eta_s=185, at_once=1)
    assert summary_line(waiting, "fr") == ("fusion des résumés · étape 4 sur 11 · 1,200 / 5,000 jetons du document (Tekken) · "
                                           "en cours : attente du modèle (2 avant) · reste environ 3 min 5 s")
    assert summary_line(waiting, "ja") == ("要約を統合中 · ステップ 4/11 · 文書の 1,200 / 5,000 トークン（Tekken） · "
                                           "現在：モデルを待っています（前に 2 件） · 残り 約 3 分 5 秒")
    assert call_text(CALLS[3], "fr") == "lecture du prompt, 512 / 1,800 jetons, encore environ 3 min 5 s"
    assert call_text(CALLS[6], "fr") == "lecture du prompt, encore environ 3 min 5 s", "the document's count is the job's"
    assert call_text(CALLS[9], "fr") == "écriture, 1,200 jetons écrits (au plus 3,000), reprise après les 40 écrits avant l’arrêt"
    assert duration_text(7300, "ja") == "約 2 時間 1 分"


@pytest.mark.parametrize("code", sorted(set(LANGUAGES) - {"en"}))
def test_progress_lines_have_no_english_words(code):
    lines = [summary_line(summary_update(what, call=call, eta_s=7300), code) for what in STAGES for call in CALLS]
    lines.append(text(code, "progress_translating_into", language=text(code, "language_fr")))
    found = [(word, line) for line in lines for word in ENGLISH if re.search(rf"\b{word}\b", line)]
    assert found == [], f"{code}: English words left in the progress lines"


# -- the page in each language, in Chromium ------------------------------------------------------
@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The real app (SmolLM2) served on loopback for this module's browser tests."""
    from app.base.config import Settings, save_settings
    from app.ui import build_app, launch

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEMO_CHAT_HOME", str(tmp_path_factory.mktemp("home")))
        save_settings(Settings(model="smollm2", n_ctx=2048, max_tokens=60))
        demo, style = build_app()
        port = free_port()
        launch(demo, style, port=port, block=False)
        yield f"http://127.0.0.1:{port}/"
        demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_settings(page, code: str) -> None:
    """The Settings tab, by its name in `code`."""
    page.wait_for_selector("#message-box")
    page.get_by_role("tab", name=text(code, "tab_settings")).click()
    page.locator("#language-picker").wait_for()


def open_convert_panel(page, code: str) -> None:
    """Settings, then the converter's accordion by its title in `code`."""
    open_settings(page, code)
    page.get_by_text(text(code, "convert_title"), exact=True).click()
    page.locator("#convert-start").wait_for()


def press_convert_without_a_folder(page, code: str) -> None:
    """The server's notice comes back in the page's language."""
    page.locator("#convert-start").focus()
    page.keyboard.press("Enter")
    expected = text(code, "convert_folder_missing")
    page.wait_for_function("text => document.querySelector('#convert-status').innerText.includes(text)",
                           arg=expected, timeout=20_000)


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_the_page_is_in_the_browser_language(code, app_url, browser, artifacts):
    context = browser.new_context(locale=BROWSER_LOCALES[code], viewport=VIEWPORT)
    page = context.new_page()
    page.goto(app_url)
    page.locator("#message-box textarea").wait_for()
    assert page.locator("#message-box textarea").get_attribute("placeholder") == text(code, "chat_box_placeholder")
    model_line = text(code, "chat_model_line", name="SmolLM2", n_ctx="2,048").replace("**", "")
    page.wait_for_function("line => document.querySelector('#model-line').innerText.startsWith(line)",
                           arg=model_line.split("SmolLM2")[0])  # written by the server in the page's language
    open_convert_panel(page, code)
    assert page.get_by_role("button", name=text(code, "convert_start"), exact=True).is_visible()
    assert page.locator("#convert-folder label").inner_text().strip() == text(code, "convert_folder")
    press_convert_without_a_folder(page, code)
    page.screenshot(path=str(artifacts / f"i18n-{code}.png"))

    right_to_left = code in RIGHT_TO_LEFT
    assert page.evaluate("document.documentElement.dir") == ("rtl" if right_to_left else "ltr")
    sidebar = page.locator(".sidebar").bounding_box()
    start, stop = page.locator("#convert-start").bounding_box(), page.locator("#convert-stop").bounding_box()
    title = page.get_by_text(text(code, "convert_title"), exact=True).bounding_box()
    panel = page.locator("#convert-folder").bounding_box()
    assert (sidebar["x"] > VIEWPORT["width"] / 2) == right_to_left, sidebar  # the sidebar on the right
    assert (start["x"] > stop["x"]) == right_to_left, (start, stop)  # the row runs right to left
    left_gap, right_gap = title["x"] - panel["x"], panel["x"] + panel["width"] - title["x"] - title["width"]
    assert (right_gap < left_gap) == right_to_left, (title, panel)  # the title starts at the right
    context.close()


def test_the_settings_choice_overrides_the_browser_and_is_kept(app_url, browser):
    """What the Settings picker calls: the page switches at once, keeps the choice on reload,
    and the server answers in it; the browser's language comes back when the choice is cleared."""
    context = browser.new_context(locale="en-US", viewport=VIEWPORT)
    page = context.new_page()
    page.goto(app_url)
    open_convert_panel(page, "en")
    page.evaluate("window.nemoChat.setLanguage('ja')")
    page.get_by_text(text("ja", "convert_title"), exact=True).wait_for(timeout=10_000)
    page.reload()
    open_convert_panel(page, "ja")
    press_convert_without_a_folder(page, "ja")
    assert page.evaluate("document.documentElement.lang") == "ja"
    page.evaluate("window.nemoChat.setLanguage('')")
    page.get_by_text(text("en", "convert_title"), exact=True).wait_for(timeout=10_000)
    press_convert_without_a_folder(page, "en")
    context.close()


def test_the_language_picker_in_settings_switches_the_page_by_keyboard(app_url, browser):
    """The picker on the Settings tab: typed and chosen with Enter, the whole page switches
    (tabs, Settings labels, the chat box) and stays switched on reload."""
    context = browser.new_context(locale="fr-FR", viewport=VIEWPORT)
    page = context.new_page()
    page.goto(app_url)
    open_settings(page, "fr")
    page.locator("#language-picker input").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("Deutsch")
    page.keyboard.press("Enter")
    page.get_by_role("tab", name=text("de", "tab_chat")).wait_for(timeout=10_000)
    page.get_by_label(text("de", "settings_context_size")).wait_for(timeout=10_000)  # one, labelled in German
    page.reload()
    open_settings(page, "de")
    page.wait_for_function("() => document.querySelector('#language-picker input').value === 'Deutsch'")
    page.get_by_label(text("de", "language_label")).wait_for(timeout=10_000)
    page.get_by_role("tab", name=text("de", "tab_chat")).click()
    placeholder = page.locator("#message-box textarea").get_attribute("placeholder")
    assert placeholder == text("de", "chat_box_placeholder")
    page.evaluate("window.nemoChat.setLanguage('')")
    context.close()


RECORD_LINES = """where => { window.nemoLines = [];
  new MutationObserver(() => { const box = document.querySelector(where), line = box ? box.innerText : '';
    if (window.nemoLines[window.nemoLines.length - 1] !== line) window.nemoLines.push(line); })
  .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def test_a_translation_shows_its_progress_in_the_page_language(app_url, browser, artifacts):
    """In a French browser, text typed in the Translate tab and sent with Enter: the progress line is
    French from end to end (the target named in French, the call's phase, the time), then the result."""
    context = browser.new_context(locale="fr-FR", viewport=VIEWPORT)
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector("#message-box")
    page.get_by_role("tab", name=text("fr", "tab_translate")).click()
    page.locator("#translate-text textarea").click()
    page.keyboard.type("The lighthouse keeper waited by the grey sea for the morning light.")
    page.evaluate(RECORD_LINES, "#translate-status")  # every line the status shows, however briefly
    page.locator("#translate-start").focus()
    page.keyboard.press("Enter")
    heading = text("fr", "progress_translating_into", language=text("fr", "language_fr"))  # "traduction en français"
    writing = text("fr", "progress_now", call=text("fr", "progress_writing_many", count=9, most=9)).split(",")[0]  # "en cours : écriture"
    left = text("fr", "progress_left", time="")  # "reste ", then the time, once the rates are measured
    languages = f"{text('fr', 'language_en')} → {text('fr', 'language_fr')}"  # the result line: the job is over
    page.locator("#translate-status", has_text=languages).wait_for(timeout=120_000)
    page.screenshot(path=str(artifacts / "i18n-translate-result-fr.png"))
    lines = page.evaluate("() => window.nemoLines")
    progress = [line for line in lines if line.startswith(heading) and writing in line and left in line]
    assert progress, f"a French line of the call being written, with the time left: {lines}"
    for line in progress:
        assert [word for word in ENGLISH if re.search(rf"\b{word}\b", line)] == [], line
    context.close()


def test_values_keep_their_direction_in_a_right_to_left_sentence(browser):
    """Chromium lays out an Arabic line with a negative number and a size in GiB: each value, isolated
    by `text`, reads as written ("-1", "0.2 GiB"); the same line without isolation shows "1-" and
    "GiB 0.2" (the defect the Arabic walk found), so the measure can tell them apart."""
    import html

    from app.faces.locale_text import CATALOG

    values = dict(used="-1", n_ctx="0.2 GiB", speed="12.5", ttft="0.3")
    page = browser.new_page()

    def lefts(line: str) -> dict[str, float]:
        """The x of the minus, the '1' after it, the '0' of 0.2 and the 'G' of GiB, as laid out."""
        page.set_content(f'<html dir="rtl" lang="ar"><body><p id="line">{html.escape(line)}</p></body></html>')
        return page.evaluate("""() => {
            const node = document.querySelector('#line').firstChild, s = node.data, range = document.createRange();
            const x = (i) => { range.setStart(node, i); range.setEnd(node, i + 1); return range.getBoundingClientRect().x; };
            const minus = s.indexOf('-1'), size = s.indexOf('0.2 GiB');
            return {minus: x(minus), one: x(minus + 1), zero: x(size), g: x(s.indexOf('GiB'))};
        }""")

    isolated = lefts(text("ar", "chat_meter", **values))
    assert isolated["minus"] < isolated["one"] and isolated["zero"] < isolated["g"], isolated
    plain = lefts(CATALOG["ar"]["chat_meter"].format(**values))
    assert plain["minus"] > plain["one"] or plain["zero"] > plain["g"], plain
    page.close()
