"""Switching the language on an open page (issue 23): chosen with the keyboard in Settings, the
page shows no word of the language it left, on any tab (what the server wrote included: the model
line, drop zones, table headers, the plan, the open conversation; and Gradio's own strings); and in
Arabic the sidebar's arrow and the ‹ › of a message's versions are mirrored (measured in Chromium)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from conftest import CHROMIUM, CHROMIUM_ARGS

from app.faces.i18n import CATALOG, LANGUAGES, text
from app.faces.ui_translate import headed, side_by_side

TABS = ["tab_chat", "tab_documents", "tab_translate", "tab_settings"]
VIEWPORT = {"width": 1280, "height": 900}
NAMES = r"nemo-\S*|\w+://\S+|\b[KMGT]i?B\b"  # the app's name, addresses, units: the same in every language
SHOWN = """(fragments) => {  // the fragments found in what the page shows: its text and its fields' placeholders
  const shown = [document.body.innerText, ...[...document.querySelectorAll('[placeholder]')]
    .filter((field) => field.offsetParent).map((field) => field.placeholder)].join('\\n')
    .replace(/\\S*\\/\\S*/g, ' ');  // paths and addresses are data
  const word = (fragment) => fragment.replace(/[.*+?^${}()|[\\]\\\\]/g, '\\\\$&');
  return fragments.filter((fragment) => new RegExp(`(?<![\\\\p{L}\\\\p{N}])${word(fragment)}(?![\\\\p{L}\\\\p{N}])`, 'u').test(shown));
}"""


def fragments(left: str, now: str) -> list[str]:
    """The pieces of text a page in `left` shows and a page in `now` does not: each locale value of
    `left` that `now` words differently, cut at its {fields}, without markup; pieces that are
    names, units or also written in `now` (e.g. 'GGUF', 'Top-p') are left out."""
    written_now = "\n".join(CATALOG[now].values())
    found = set()
    for key, value in CATALOG[left].items():
        if CATALOG[now].get(key) == value:
            continue
        for piece in re.split(r"\{[^}]*\}|<[^>]*>|\*\*|`|\n", value):
            piece = re.sub(r"^[\W\d_]+|[\W\d_]+$", "", re.sub(NAMES, " ", piece)).strip()
            if re.search(r"[^\W\d_]{2}", piece) and piece not in written_now:
                found.add(piece)
    return sorted(found)


def choose_language(page, now: str, code: str) -> None:
    """The Settings picker, by keyboard: type the language's own name, Enter."""
    page.get_by_role("tab", name=text(now, "tab_settings")).click()
    page.locator("#language-picker input").click()
    page.keyboard.press("Control+a")
    page.keyboard.type(LANGUAGES[code])
    page.keyboard.press("Enter")
    page.get_by_role("tab", name=text(code, "tab_chat")).wait_for(timeout=10_000)


def left_over(page, code: str, pieces: list[str], shots: Path | None = None) -> dict[str, list[str]]:
    """Each tab, opened by its name in `code`: the lines that still show pieces once the server's
    words have come (waited for up to 15 s each; an empty dict when none is left); `shots`: a
    screenshot of each tab there, named by language and tab."""
    found = {}
    for tab in TABS:
        page.get_by_role("tab", name=text(code, tab)).click()
        try:
            page.wait_for_function(f"(pieces) => ({SHOWN})(pieces).length === 0", arg=pieces, timeout=15_000)
        except Exception:  # Playwright's TimeoutError: say what is left, and where
            left = page.evaluate(SHOWN, pieces)
            found[tab] = [line for line in page.locator("body").inner_text().splitlines()
                          if any(re.search(rf"(?<!\w){re.escape(piece)}(?!\w)", line) for piece in left)] or left
        if shots:
            page.screenshot(path=str(shots / f"language-switch-{code}-{tab.removeprefix('tab_')}.png"))
    return found


def open_every_accordion(page) -> None:
    """Every closed accordion of every tab opened, so that what they hold is shown too."""
    page.evaluate("() => document.querySelectorAll('.label-wrap:not(.open)').forEach((label) => label.click())")


def a_conversation_with_two_versions(history) -> int:
    """A question asked twice (an Edit): the second version shown, with its reply (no words in
    it: a word of it would be data, not the page's)."""
    cid = history.create_conversation("= ?")
    first = history.add_message(cid, "user", "2 + 2 = ?")
    history.add_message(cid, "assistant", "4")
    history.branch_before(first)
    history.add_message(cid, "user", "3 + 3 = ?")
    history.add_message(cid, "assistant", "6")
    return cid


def test_a_translation_table_shown_takes_its_headers_in_the_new_language_and_keeps_its_rows():
    rows, writing = [("The sea </tr>", "La mer"), ("Waves", None)], {1: "Vag"}
    assert headed(side_by_side(rows, writing, "en"), "ja") == side_by_side(rows, writing, "ja")
    assert text("ja", "translate_col_translation") in headed(side_by_side(rows, None, "ar"), "ja")
    assert headed("", "ja") == ""


def test_fragments_are_what_the_left_language_shows_and_the_new_one_does_not():
    english = fragments("en", "ja")
    assert {"Drop File Here", "Model", "Click to Upload"} <= set(english)
    assert "GGUF" not in english and "Top-p" not in english, "written the same in Japanese"
    assert "ファイルをここにドロップ" in fragments("ja", "ar")


@contextmanager
def a_page_with_versions(served, locale: str):
    """Chromium in `locale` on the app, a conversation with two versions of its question open."""
    from playwright.sync_api import sync_playwright

    demo, url = served
    a_conversation_with_two_versions(demo.nemo.history)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(locale=locale, viewport=VIEWPORT).new_page()
        page.goto(url)
        page.locator("#conversation-list label", has_text="=").click()
        page.locator("#chatbot .nemo-versions").wait_for(timeout=30_000)
        yield page
        page.evaluate("window.nemoChat.setLanguage('')")
        browser.close()


def type_a_glossary_term(page, term: str) -> None:
    """The glossary's first cell, by keyboard: selected, Enter to edit it, the term, Enter."""
    page.locator("#translate-glossary").get_by_role("gridcell").first.click()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.matches('#translate-glossary textarea')")
    page.keyboard.type(term)
    page.keyboard.press("Enter")


def test_switching_language_on_an_open_page_leaves_no_word_of_the_language_left(served, artifacts, tmp_path):
    """Every tab walked after each switch (en → ja → ar → it → en), accordions open, with a stored
    document (its row in the table), an open conversation with versions, text typed to translate
    (the language detected) and a glossary term, which stays."""
    from app.documents.reading import read_document

    notes = tmp_path / "2024.md"
    notes.write_text("# 2024\n\nThe lighthouse keeper waited by the grey sea for the morning light.\n")
    served[0].nemo.documents.add(read_document(notes))
    with a_page_with_versions(served, "en-US") as page:
        page.get_by_role("tab", name=text("en", "tab_translate")).click()
        page.locator("#translate-text textarea").click()
        page.keyboard.type("The lighthouse keeper waited for the morning light.")  # its language: the server's words
        page.locator("#translate-detected", has_text=text("en", "language_en")).wait_for(timeout=30_000)
        type_a_glossary_term(page, "lighthouse")
        open_every_accordion(page)
        english, shown = fragments("en", "ja"), set()
        for tab in TABS:
            page.get_by_role("tab", name=text("en", tab)).click()
            shown.update(page.evaluate(SHOWN, english))
        assert {"Drop File Here", "Model", "Tokens", "fits in one pass", "English"} <= shown, \
            "the check sees English where it is"

        # Italian, which Gradio's own locales lack: English (Gradio's fallback) is looked for too
        for before, after in [("en", "ja"), ("ja", "ar"), ("ar", "it"), ("it", "en")]:
            choose_language(page, before, after)
            pieces = sorted({*fragments(before, after), *(fragments("en", after) if after != "en" else ())})
            shots = artifacts if after != "en" else None
            assert left_over(page, after, pieces, shots) == {}, f"words of {before} (or en) left after {after}"
            previous = page.locator("#chatbot .nemo-versions button").first
            assert previous.get_attribute("aria-label") == text(after, "history_version_previous")
            assert "lighthouse" in page.locator("#translate-glossary").inner_text(), "the glossary keeps its terms"


SETTLED = "() => !document.querySelector('.sidebar').getAnimations({subtree: true}).length"  # no transition left


def pointing(png: bytes) -> str:
    """Which way the glyph drawn in a screenshot points: 'left' when the ink of its middle rows
    lies left of the ink of its top and bottom rows (as in ‹), else 'right'."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    pixels = image.load()
    background = sorted(pixels[x, y] for x in range(width) for y in range(height))[width * height // 2]
    ink = [(x, y) for x in range(width) for y in range(height) if pixels[x, y] < background - 50]
    top, bottom = min(y for _, y in ink), max(y for _, y in ink)
    third = (bottom - top) / 3

    def mean_x(rows) -> float:
        xs = [x for x, y in ink if rows(y)]
        return sum(xs) / len(xs)

    middle = mean_x(lambda y: top + third <= y <= bottom - third)
    ends = mean_x(lambda y: y < top + third or y > bottom - third)
    return "left" if middle < ends else "right"


def test_right_to_left_mirrors_the_sidebar_arrow_and_the_version_chevrons(served, artifacts):
    """In Arabic, "previous version" is the right-hand button and its chevron points right; the open
    sidebar (on the right) has its arrow pointing right, where it closes. The same page in English,
    measured the same way, gives the other sides: the measure tells them apart."""
    with a_page_with_versions(served, "ar-EG") as page:
        for code, start, end in [("ar", "right", "left"), ("en", "left", "right")]:
            if code == "en":
                choose_language(page, "ar", "en")
            page.get_by_role("tab", name=text(code, "tab_chat")).click()
            previous = page.get_by_role("button", name=text(code, "history_version_previous"))
            following = page.get_by_role("button", name=text(code, "history_version_next"))
            toggle = page.locator(".sidebar .toggle-button")
            page.wait_for_function(SETTLED)
            page.screenshot(path=str(artifacts / f"rtl-chevrons-{code}.png"))
            before, after = previous.bounding_box(), following.bounding_box()
            assert (before["x"] > after["x"]) == (start == "right"), (code, before, after)
            assert pointing(previous.screenshot()) == start, f"{code}: previous version points to the {start}"
            assert pointing(following.screenshot()) == end, f"{code}: next version points to the {end}"
            assert pointing(toggle.screenshot()) == start, f"{code}: the open sidebar's arrow points where it closes"
            toggle.focus()
            page.keyboard.press("Enter")  # closed: the arrow points where the sidebar comes from
            page.wait_for_function(SETTLED)
            assert pointing(toggle.screenshot()) == end, f"{code}: the closed sidebar's arrow points where it opens"
            page.screenshot(path=str(artifacts / f"rtl-sidebar-closed-{code}.png"))
            page.keyboard.press("Enter")
            page.wait_for_function(SETTLED)


def test_what_the_page_opens_with_is_not_written_again_on_each_change(home):
    """What runs when the page opens (`in_page_language`'s words, the settings' fill) never also runs
    on a change of its inputs, as `gr.on(None, fn, inputs)` does: its late answer would undo what a
    person chose meanwhile (a second document ticked in the ask panel was unticked by the answer to
    the first tick, and each key typed in Translate's box asked for the page's words again)."""
    from app.ui import build_app

    demo, _ = build_app()
    on_load = [block_fn for block_fn in demo.fns.values() if any(event == "load" for _, event in block_fn.targets)]
    assert len(on_load) >= 8
    both = [block_fn.name for block_fn in on_load if any(event == "change" for _, event in block_fn.targets)]
    assert both == []
