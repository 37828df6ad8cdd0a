"""The interface's languages: NeMo's 11 (locale files in `locales/`), one `gr.I18n` for the page.

Two kinds of text, two ways (Gradio 6.31 translates in the browser only the `label`, `info`,
`placeholder`, `title` and `value` of components, one key each, with no parameters):

- what a component shows from the start: `t("key")`, translated by the page in its language;
- what a handler returns (notices, errors, progress, choices): `say(request, "key", n=3)`,
  written on the server in the language of the page that asked (the cookie the page sets),
  else of the browser (`Accept-Language`), else English.

The page picks its language from the browser, or from the choice made in Settings
(`language_picker`, kept in the browser's localStorage); Arabic lays the whole page out right to
left. `page_head()` is the script and style for `launch(head=...)` that do this. A choice in
Settings switches an open page: what the server wrote there in words (registered with
`in_page_language`) is written again in the new language (`redraw_on_switch`), and Gradio's own
strings (the locale keys with a dot, e.g. `upload_text.drop_file`) follow.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import gradio as gr
from gradio.context import Context
from gradio.i18n import I18nData

from app.base.messages import isolated
from app.faces import locale_text
from app.faces.locale_text import CATALOG, LANGUAGES, LOCALES, RIGHT_TO_LEFT  # noqa: F401  the faces' one door

PAGE_LOCALES = {"zh": "zh-CN"}  # where Gradio's own strings live under another code
COOKIE = "nemo-chat-language"  # what the page tells the server; localStorage keeps the Settings choice
ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
RTL_CSS, PAGE_JS = ASSETS / "rtl.css", ASSETS / "page_language.js"


def text(language: str, key: str, /, **values) -> str:
    """The page's words for `key` (locale_text.text); in a right-to-left language each value is isolated."""
    return locale_text.text(language, key, isolate=language in RIGHT_TO_LEFT, **values)


def words(language: str, said):
    """What a service said, in the page's words (locale_text.words), values isolated right to left."""
    return locale_text.words(language, said, language in RIGHT_TO_LEFT)


def as_data(language: str, value: str) -> str:
    """A value the page shows as it is, outside a sentence (a number and its unit in a table cell):
    isolated in a right-to-left page, where '0.2 GiB' would otherwise read 'GiB 0.2'."""
    return isolated(value) if language in RIGHT_TO_LEFT else value


I18N = gr.I18n(**CATALOG)


def t(key: str) -> I18nData:
    """A component's text, translated by the page (`label=t("chat_send")`); the key must exist."""
    if key not in CATALOG["en"]:
        raise KeyError(f"no locale key {key!r} in {LOCALES / 'en.json'}")
    return I18N(key)


def language_of(request: gr.Request | None) -> str:
    """The page's language: its cookie, else the browser's `Accept-Language`, else English."""
    if request is None:
        return "en"
    chosen = (getattr(request, "cookies", None) or {}).get(COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    return best_language((getattr(request, "headers", None) or {}).get("accept-language", ""))


def best_language(accept_language: str) -> str:
    """The first of our languages in an `Accept-Language` value ('ar-EG,en;q=0.5' → 'ar')."""
    ranked = []
    for n, part in enumerate(accept_language.split(",")):
        tag, _, quality = part.strip().partition(";q=")
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            continue
        ranked.append((-weight, n, tag.split("-")[0].lower()))
    return next((base for _, _, base in sorted(ranked) if base in LANGUAGES), "en")


def say(request: gr.Request | None, key: str, /, **values) -> str:
    """`text` in the language of the page that sent `request`: for what handlers return."""
    return text(language_of(request), key, **values)


def language_picker() -> gr.Dropdown:
    """The Settings control: the browser's language or one of the 11; the page switches at once
    and remembers the choice in this browser. Call inside the Blocks, where it should appear;
    then `name_tabs(demo)` and `redraw_on_switch(demo, picker)` once the page is built."""
    picker = gr.Dropdown([(t("language_auto"), ""), *((name, code) for code, name in LANGUAGES.items())],
                         value="", label=t("language_label"), elem_id="language-picker", interactive=True)
    gr.on(None, None, None, picker, js="() => window.nemoChat.chosenLanguage()")  # on load: the kept choice
    return picker


def in_page_language(fn, inputs, outputs, on_load: bool = True) -> None:
    """`outputs` hold words the server writes in the page's language (`fn(*inputs, request)` makes
    them, with `say`): written when the page opens (unless `on_load` is False: the page's own load
    handler writes them) and again each time the Settings picker switches the page
    (`redraw_on_switch`), so no word of the language left stays on an open page. Call inside the
    Blocks; `fn` should keep what a person typed or chose (take it as an input)."""
    if on_load:  # on load only: `gr.on(None, …)` would also run on every change of `inputs`, and its
        # answer, arriving late, would undo what the person chose meanwhile
        Context.root_block.load(fn, inputs, outputs, show_progress="hidden")
    Context.root_block.__dict__.setdefault("page_words", []).append((fn, inputs, outputs))


def name_tabs(demo: gr.Blocks) -> None:
    """Tab names written by the server in the page's language (`in_page_language`). Gradio
    translates a tab's name in the tab bar only once the tab has been shown, so a page whose
    language changes after it appeared (the kept choice, applied as the page loads, or a new one)
    would keep the other tabs' names. Call inside the Blocks once every tab is built."""
    tabs = [block for block in demo.blocks.values()
            if isinstance(block, gr.Tab) and isinstance(block.label, I18nData)]

    def names(request: gr.Request) -> list:
        return [gr.update(label=say(request, tab.label.key)) for tab in tabs]

    in_page_language(names, None, tabs)


def redraw_on_switch(demo: gr.Blocks, picker: gr.Dropdown) -> None:
    """A choice in the picker switches the page (Gradio's own strings and every `t()` text, in
    the browser), then has the server write again, in the new language, everything registered
    with `in_page_language`. Call once the page is built."""
    def chosen(_code: str) -> None:  # the page has switched: its cookie names the language
        return None

    switched = picker.input(chosen, picker, None, queue=False,
                            js="(code) => { window.nemoChat.setLanguage(code); return code; }")
    for fn, inputs, outputs in demo.__dict__.get("page_words", []):
        switched.then(fn, inputs, outputs, show_progress="hidden")


@functools.cache
def _gradio_core_module() -> str:
    """Gradio's frontend module that exports `changeLocale`, as a URL relative to the page."""
    assets = Path(gr.__file__).parent / "templates" / "frontend" / "assets"
    for path in sorted(assets.glob("core-*.js")):
        if "as changeLocale" in path.read_text(encoding="utf-8"):
            return f"assets/{path.name}"
    raise RuntimeError(f"gradio {gr.__version__}: no frontend module exports changeLocale in {assets}")


def page_head() -> str:
    """The `<style>` and `<script>` for `launch(head=...)`: the right-to-left layout, and
    `assets/page_language.js` (the language chosen, told to Gradio and the server; Gradio's own
    strings, the locale keys with a dot, told again where Gradio drew them in another language)."""
    gradio_words = {key: {code: CATALOG[code][key] for code in LANGUAGES} for key in CATALOG["en"] if "." in key}
    settings = json.dumps({"languages": sorted(LANGUAGES), "pageLocales": PAGE_LOCALES, "rtl": list(RIGHT_TO_LEFT),
                           "cookie": COOKIE, "core": _gradio_core_module(), "gradioWords": gradio_words},
                          ensure_ascii=False).replace("</", "<\\/")
    script = PAGE_JS.read_text(encoding="utf-8").replace("/*SETTINGS*/null", settings, 1)
    return f"<style>{RTL_CSS.read_text(encoding='utf-8')}</style>\n<script>\n{script}</script>"
