"""The Arabic page read in Chromium (issue 23): numbers, units and lists of extensions keep their
order in a right-to-left page (measured where each character, or each glyph of a number field, is
drawn), and what the engine and the translator say reaches the page in Arabic, not in English."""

from __future__ import annotations

import io
import re

from playwright.sync_api import expect
from test_language_switch import VIEWPORT
from test_security_limits import KEY, this_machines_address

from app.base.config import Settings
from app.faces.api_server import ApiServer
from app.faces.i18n import text
from app.services.root import Services

from conftest import free_port

READS = """(element, pattern) => {  // each match of pattern in element's text: [it, whether it reads left to right]
  const nodes = [];
  let all = '';
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode());) { nodes.push([node, all.length]); all += node.data; }
  const drawn = (i) => {  // where the character at i of all is drawn
    const [node, start] = nodes.filter(([, first]) => first <= i).pop();
    const range = document.createRange();
    range.setStart(node, i - start);
    range.setEnd(node, i - start + 1);
    return range.getBoundingClientRect();
  };
  return [...all.matchAll(new RegExp(pattern, 'gu'))].map((match) => {
    const boxes = [...match[0]].map((c, k) => [c, match.index + k]).filter(([c]) => /[^\\s\\u2066-\\u2069\\u200e\\u200f]/u.test(c))
      .map(([, i]) => drawn(i));
    // on one line, each character right of the one before (a line break lets the next start anew)
    return [match[0], boxes.every((box, k) => k === 0 || box.top !== boxes[k - 1].top || box.left >= boxes[k - 1].left)];
  });
}"""


def glyphs(png: bytes) -> list[tuple[int, int]]:
    """(left x, height of its ink) of each glyph in a screenshot of one line of dark text on a
    light field, left to right: a glyph is a run of columns with ink."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    pixels = image.load()
    inked = [[y for y in range(height) if pixels[x, y] < 128] for x in range(width)]
    found, start = [], None
    for x in range(width + 1):
        if x < width and inked[x]:
            start = x if start is None else start
        elif start is not None:
            rows = [y for column in inked[start:x] for y in column]
            found.append((start, max(rows) - min(rows) + 1))
            start = None
    return found


def arabic_page(page, url: str):
    """A second page in the same browser, its language Arabic (the browser's)."""
    arabic = page.context.browser.new_page(locale="ar-EG", viewport=VIEWPORT)
    arabic.goto(url)
    arabic.wait_for_function("() => document.documentElement.dir === 'rtl'", timeout=30_000)
    arabic.locator("#message-box textarea").wait_for(timeout=30_000)
    return arabic


def test_numbers_units_and_extensions_read_left_to_right_in_the_arabic_page(served, page, artifacts):
    """"-1" in the GPU layers field and in its label, "0.2 GiB" in the plan's cost table, and the
    list of extensions Translate takes (".docx, .htm, …") each read left to right where they are
    drawn. The measure sees the reversed order where it is: an Arabic line holding "0.2 GiB"
    without isolation reads "GiB 0.2", and a number field told to read right to left shows "1-"."""
    arabic = arabic_page(page, served[1])
    arabic.evaluate("() => { const line = document.createElement('p'); line.id = 'probe'; line.dir = 'rtl';"
                    " line.textContent = 'ذاكرة 0.2 GiB'; document.body.prepend(line); }")
    assert arabic.locator("#probe").evaluate(READS, r"\d\S* GiB") == [["0.2 GiB", False]], "the measure sees it"
    arabic.evaluate("() => document.getElementById('probe').remove()")

    arabic.get_by_role("tab", name=text("ar", "tab_settings")).click()
    layers = arabic.get_by_label(text("ar", "settings_gpu_layers"), exact=True)
    layers.click()
    arabic.keyboard.press("Control+a")
    arabic.keyboard.type("-1")
    arabic.keyboard.press("Tab")  # left, and the pointer away: no spin buttons drawn
    arabic.mouse.move(0, 0)
    minus, one = glyphs(layers.screenshot())
    assert minus[0] < one[0] and minus[1] * 3 < one[1], f"the field shows -1 (a flat glyph, then a tall one): {minus, one}"
    layers.evaluate("field => field.style.setProperty('direction', 'rtl', 'important')")
    one, minus = glyphs(layers.screenshot())
    assert minus[1] * 3 < one[1], "right to left, the same measure reads 1-"
    layers.evaluate("field => field.style.removeProperty('direction')")

    label = arabic.locator("[data-testid=block-info]", has_text="GPU").first
    assert "\u200e-1" in label.inner_text(), "the locale's left-to-right mark reaches the page"
    assert label.evaluate(READS, "-1") == [["-1", True]]

    costs = arabic.locator("#gpu-plan td", has_text="GiB")
    expect(costs.first).to_be_visible(timeout=30_000)
    costs.first.scroll_into_view_if_needed()
    read = [reading for n in range(costs.count()) for reading in costs.nth(n).evaluate(READS, r"\d\S* GiB")]
    assert read and all(ltr for _, ltr in read), read
    arabic.screenshot(path=str(artifacts / "rtl-settings-costs-ar.png"))

    arabic.get_by_role("tab", name=text("ar", "tab_translate")).click()
    kinds = arabic.locator("#translate-file [data-testid=block-label]")
    expect(kinds).to_contain_text(".docx", timeout=30_000)
    read = kinds.evaluate(READS, r"\.\w+,?")
    assert len(read) >= 5 and all(ltr for _, ltr in read), read  # '.docx,': the dot left, the comma right
    arabic.screenshot(path=str(artifacts / "rtl-translate-kinds-ar.png"))
    arabic.close()


def test_the_translators_less_supported_languages_are_named_in_the_page_language(served, page, artifacts):
    """Translate's To, by keyboard in the Arabic page: Swedish is offered as less supported, in Arabic."""
    arabic = arabic_page(page, served[1])
    arabic.get_by_role("tab", name=text("ar", "tab_translate")).click()
    arabic.locator("#translate-to input").click()
    arabic.keyboard.press("Control+a")
    arabic.keyboard.type("Swedish")
    option = arabic.get_by_role("option", name=text("ar", "language_less_supported", name="Swedish"))
    expect(option).to_be_visible(timeout=30_000)
    assert "less supported" not in arabic.locator("body").inner_text()
    arabic.screenshot(path=str(artifacts / "rtl-translate-less-supported-ar.png"))
    arabic.keyboard.press("Enter")
    expect(arabic.locator("#translate-to input")).to_have_value(
        text("ar", "language_less_supported", name="Swedish"), timeout=10_000)
    arabic.close()


def test_a_key_sent_in_clear_is_warned_of_in_the_page_language(served, page, artifacts, home):
    """Settings → Engine in the Arabic page, typed: a server on this machine's network address over
    http, with a key. The warning that the key travels unencrypted is in Arabic, no English in it."""
    with Services(Settings(model="smollm2", n_ctx=512)) as server_side:
        server_side.ensure_model()
        api = ApiServer(server_side, host="0.0.0.0", port=free_port(), api_key=KEY).start()
        try:
            address = f"http://{this_machines_address()}:{api.url.rsplit(':', 1)[1].split('/')[0]}/v1"
            arabic = arabic_page(page, served[1])
            arabic.get_by_role("tab", name=text("ar", "tab_settings")).click()
            arabic.get_by_text(text("ar", "engine_title")).click()
            arabic.get_by_label(text("ar", "engine_server")).check()
            arabic.locator("#engine-url textarea, #engine-url input").first.click()
            arabic.keyboard.type(address)
            arabic.locator("#engine-key input").click()
            arabic.keyboard.type(KEY)
            arabic.locator("#engine-use").click()
            status = arabic.locator("#engine-status")
            warning = text("ar", "remote_key_in_clear", url=address, host=this_machines_address())
            expect(status).to_contain_text(re.sub("[\u2066-\u2069]", "", warning)[-40:], timeout=60_000)
            status.scroll_into_view_if_needed()
            arabic.screenshot(path=str(artifacts / "rtl-engine-key-in-clear-ar.png"))
            shown = re.sub(r"\S*://\S*|\S*/\S*", " ", status.inner_text())  # addresses and routes are data
            assert "unencrypted" not in shown and re.search("[\u0600-\u06ff]{3}", shown), shown
            arabic.close()
        finally:
            api.stop()
