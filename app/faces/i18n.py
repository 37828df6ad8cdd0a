"""The interface's languages: NeMo's 11 (locale files in `locales/`), one `gr.I18n` for the page.

Two kinds of text, two ways (Gradio 6.31 translates in the browser only the `label`, `info`,
`placeholder`, `title` and `value` of components, one key each, with no parameters):

- what a component shows from the start: `t("key")`, translated by the page in its language;
- what a handler returns (notices, errors, progress, choices): `say(request, "key", n=3)`,
  written on the server in the language of the page that asked (the cookie the page sets),
  else of the browser (`Accept-Language`), else English.

The page picks its language from the browser, or from the choice made in Settings
(`language_picker`, kept in the browser's localStorage); Arabic lays the whole page out right to
left. `page_head()` is the script and style for `launch(head=...)` that do this.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import gradio as gr
from gradio.i18n import I18nData

from app.faces import locale_text
from app.faces.locale_text import CATALOG, LANGUAGES, LOCALES, RIGHT_TO_LEFT  # noqa: F401  the faces' one door

PAGE_LOCALES = {"zh": "zh-CN"}  # where Gradio's own strings live under another code
COOKIE = "nemo-chat-language"  # what the page tells the server; localStorage keeps the Settings choice
RTL_CSS = Path(__file__).resolve().parent.parent.parent / "assets" / "rtl.css"


def text(language: str, key: str, /, **values) -> str:
    """The page's words for `key` (locale_text.text); in a right-to-left language each value is isolated."""
    return locale_text.text(language, key, isolate=language in RIGHT_TO_LEFT, **values)


def words(language: str, said):
    """What a service said, in the page's words (locale_text.words), values isolated right to left."""
    return locale_text.words(language, said, language in RIGHT_TO_LEFT)


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
    then `name_tabs(demo, picker)` once the page is built."""
    picker = gr.Dropdown([(t("language_auto"), ""), *((name, code) for code, name in LANGUAGES.items())],
                         value="", label=t("language_label"), elem_id="language-picker", interactive=True)
    gr.on(None, None, None, picker, js="() => window.nemoChat.chosenLanguage()")  # on load: the kept choice
    return picker


def name_tabs(demo: gr.Blocks, picker: gr.Dropdown) -> None:
    """Tab names written by the server in the page's language, on load and on each choice of the
    picker (which first switches the page). Gradio translates a tab's name in the tab bar only
    once the tab has been shown, so a page whose language changes after it appeared (the kept
    choice, applied as the page loads, or a new one) would keep the other tabs' names."""
    tabs = [block for block in demo.blocks.values()
            if isinstance(block, gr.Tab) and isinstance(block.label, I18nData)]

    def names(request: gr.Request) -> list:
        return [gr.update(label=say(request, tab.label.key)) for tab in tabs]

    def chosen(_code: str, request: gr.Request) -> list:  # the page has switched: its cookie names the language
        return names(request)

    demo.load(names, None, tabs, queue=False)
    picker.input(chosen, picker, tabs, queue=False, js="(code) => { window.nemoChat.setLanguage(code); return code; }")


@functools.cache
def _gradio_core_module() -> str:
    """Gradio's frontend module that exports `changeLocale`, as a URL relative to the page."""
    assets = Path(gr.__file__).parent / "templates" / "frontend" / "assets"
    for path in sorted(assets.glob("core-*.js")):
        if "as changeLocale" in path.read_text(encoding="utf-8"):
            return f"assets/{path.name}"
    raise RuntimeError(f"gradio {gr.__version__}: no frontend module exports changeLocale in {assets}")


def page_head() -> str:
    """The `<script>` and `<style>` for `launch(head=...)`: choose the language (Settings choice,
    else the browser's, else English), tell Gradio and the server, set `dir` for right-to-left."""
    settings = json.dumps({"languages": sorted(LANGUAGES), "pageLocales": PAGE_LOCALES, "rtl": list(RIGHT_TO_LEFT),
                           "cookie": COOKIE, "core": _gradio_core_module()})
    return f"""<style>{RTL_CSS.read_text(encoding="utf-8")}</style>
<script>
(() => {{
  const S = {settings};
  const kept = () => {{ try {{ return localStorage.getItem(S.cookie) || ""; }} catch (e) {{ return ""; }} }};
  const pick = () => {{
    if (S.languages.includes(kept())) return kept();
    for (const tag of navigator.languages || [navigator.language]) {{
      const base = String(tag).toLowerCase().split("-")[0];
      if (S.languages.includes(base)) return base;
    }}
    return "en";
  }};
  const apply = async (code) => {{
    document.cookie = `${{S.cookie}}=${{code}}; path=/; SameSite=Strict`;
    document.documentElement.dir = S.rtl.includes(code) ? "rtl" : "ltr";
    const core = await import(new URL(S.core, document.baseURI).href);
    core.changeLocale(S.pageLocales[code] || code);
  }};
  window.nemoChat = Object.assign(window.nemoChat || {{}}, {{
    chosenLanguage: kept,
    setLanguage: (code) => {{
      try {{ code ? localStorage.setItem(S.cookie, code) : localStorage.removeItem(S.cookie); }} catch (e) {{}}
      return apply(pick());
    }},
  }});
  apply(pick());
}})();
</script>"""
