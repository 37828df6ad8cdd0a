"""Translation: structure kept byte for byte, resume after Stop, glossary, CLI.

The real SmolLM2 engine translates badly; these tests check only what the pipeline guarantees
(what reaches the model, what comes back unchanged, what is redone). NeMo's translation quality
can't be measured here without its weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from app.documents import markdown_segments as md
from app.storage.document_store import DocumentStore
from app.base.errors import UserError
from app.history import History
from app.base.jobs import CancelToken, Job
from app.base.messages import Message
from app.documents.reading import read_document
from app.documents.language import LanguageCheck
from app.faces.locale_text import words
from app.faces.progress_text import call_text
from app.services.engine_calls import READING, WRITING
from app.services.glossary import glossary_from_rows, read_glossary, term_in
from app.services.translate import (CAP, ROOM, TWICE, Cut, TranslateOptions, TranslationJob, TranslationRequest,
                                    cut_notes, english_name, language_choices, parse_numbered,
                                    plan_segments, resolve_language, translate, unnumbered)

from conftest import run_cli
from test_summarize import RecordingEngine

DOCUMENT = """---
title: Release notes
tags: [docs, test]
---

# Getting started with `nemo`

Install it with `pip install nemo-chat` and read [the guide](https://example.com/guide?x=1&y=2 "Guide").
Questions go to https://forum.example.org/t/42 or to help@example.com.

<div class="note">Raw HTML block.</div>

Some <b>bold HTML</b> and an ![image of a cat](img/cat.png) here.  
After a hard break comes a [reference link][docs].

| Fruit | Count | Note |
|-------|------:|------|
| Apples | 12 | fresh from the farm |
| Pears \\| quinces | 3.5 | 2024-01-02 |

- The first item with **bold** text
- The second item
  goes on here
  1. A nested step

> A quoted line
> and its second line

```python
def greet(name):
    return f"Hello, {name}!"  # never translated
```

    indented_code = True

[docs]: https://docs.example.com/start
"""

CODE = ['def greet(name):\n    return f"Hello, {name}!"  # never translated\n', "    indented_code = True",
        "`nemo`", "`pip install nemo-chat`", "<b>", "</b>", '<div class="note">Raw HTML block.</div>']
URLS = ["(https://example.com/guide?x=1&y=2 \"Guide\")", "https://forum.example.org/t/42", "help@example.com",
        "(img/cat.png)", "[docs]", "[docs]: https://docs.example.com/start", "---\ntitle: Release notes\ntags: [docs, test]\n---\n"]


def counts(markdown: str) -> dict:
    found = md.outline(markdown)
    return {k: found[k] for k in ("heading_open", "list_item_open", "tr_open", "blocks", "fence", "code_block",
                                  "html_block", "table_open", "front_matter", "blockquote_open")}


@pytest.fixture()
def store(tmp_path):
    history = History(tmp_path / "nemo-chat.db")
    yield DocumentStore(history)
    history.close()


class CountingEngine:
    """The real engine; counts `complete` calls and keeps each request's last user text."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def complete(self, *args, **kwargs):
        self.calls += 1
        return self._engine.complete(*args, **kwargs)


FAST = TranslateOptions(temperature=0, max_tokens=8)  # output quality is not tested: keep calls short


# -- what reaches the model, what comes back (no model) ------------------------------------------


def test_pieces_hold_prose_only_and_markers_stand_for_kept_source():
    source = md.normalize(DOCUMENT)
    pieces = md.markdown_pieces(source)
    sent = "\n".join(p.text for p in pieces)
    for kept in CODE + ["https://", "help@example.com", "img/cat.png", "title:", "[docs]", "Raw HTML"]:
        assert kept.strip() not in sent, kept
    for piece in pieces:
        assert [int(n) for n in md.MARKER_RE.findall(piece.text)] == list(range(1, len(piece.kept) + 1))
    unchanged = md.assemble(source, [(p.start, p.end, md.fill(p, p.text)[0]) for p in pieces])
    assert counts(unchanged) == counts(source)
    for kept in CODE + URLS:
        assert kept in unchanged, kept
    assert [p.text for p in pieces if p.where == "cell"] == ["Fruit", "Count", "Note", "Apples",
                                                             "fresh from the farm", "Pears \\| quinces"]
    assert not any(p.text in ("12", "3.5", "2024-01-02") for p in pieces), "numbers-only cells stay"


def test_any_model_output_keeps_code_urls_and_structure():
    """Whatever the model writes (here: damaged on purpose) the kept parts and the layout survive."""
    source = md.normalize(DOCUMENT)
    pieces = md.markdown_pieces(source)
    nasty = ["# {}", "- {}\n\n1. more", "{} | with | pipes", "> {}", "```\n{}", "<div>{}</div>", "{}\n===",
             "    {}", "{} ⟦1⟧ ⟦1⟧ ⟦99⟧ ⟦2"]
    replacements = []
    for i, piece in enumerate(pieces):
        damaged = md.MARKER_RE.sub("", piece.text) if i % 2 else piece.text
        replacements.append((piece.start, piece.end, md.fill(piece, nasty[i % len(nasty)].format(damaged.upper()))[0]))
    out = md.assemble(source, replacements)
    for kept in CODE + URLS:
        assert kept in out, kept
    assert counts(out) == counts(source)


def test_fill_puts_dropped_markers_back_and_escapes_block_markers():
    [piece] = md.markdown_pieces("See `a` and [b](http://x.org).")
    text, problems = md.fill(piece, "# Voir et [b]")
    assert text == "\\# Voir et [b] `a` [b](http://x.org)" and len(problems) == 2
    assert md.fill(piece, "1. Voir ⟦1⟧ et ⟦2⟧b⟦3⟧")[0] == "1\\. Voir `a` et [b](http://x.org)"
    assert md.fill(piece, "   ")[0] == ""  # an empty reply keeps the source
    [cell] = [p for p in md.markdown_pieces("| a |\n|---|\n| word |\n") if p.text == "word"]
    assert md.fill(cell, "x | y")[0] == "x \\| y"
    [broken] = md.markdown_pieces("one  \ntwo\n")
    assert broken.breaks == {1} and md.fill(broken, "eins ⟦1⟧- zwei")[0] == "eins  \n\\- zwei"
    assert md.fill(broken, "eins zwei") == ("eins zwei", [])  # a dropped line break is no problem


def test_a_link_is_a_pair_of_markers_around_its_translated_text():
    """`[text](url)` reaches the model as ⟦1⟧text⟦2⟧; whatever comes back, the output has the link."""
    [piece] = md.markdown_pieces("Read [the manual](https://example.com/m?a=1) and `make`.")
    assert piece.text == "Read ⟦1⟧the manual⟦2⟧ and ⟦3⟧."
    assert piece.links == ((1, 2, "[the manual](https://example.com/m?a=1)"),)
    assert md.fill(piece, "Lisez ⟦1⟧le manuel⟦2⟧ et ⟦3⟧.") == ("Lisez [le manuel](https://example.com/m?a=1) et `make`.", [])
    assert md.fill(piece, "⟦3⟧ : ⟦1⟧le manuel⟦2⟧ d'abord")[0] == "`make` : [le manuel](https://example.com/m?a=1) d'abord"
    for broken in ["Lisez le manuel et ⟦3⟧.", "Lisez ⟦2⟧le manuel⟦1⟧ et ⟦3⟧.", "Lisez ⟦1⟧ ⟦2⟧ le manuel et ⟦3⟧.",
                   "Lisez le manuel⟦2⟧ et ⟦3⟧."]:  # dropped, swapped, empty, half: the source link, at the end
        text, problems = md.fill(piece, broken)
        assert text.endswith(" [the manual](https://example.com/m?a=1)") and "(https" not in text[:-40], (broken, text)
        assert text.count("`make`") == 1 and "⟦" not in text
        assert [str(problem) for problem in problems] == ["the link [the manual](https://example.com/m?a=1) was misplaced by the model; put at the end"]
    [image] = md.markdown_pieces("A ![cat](c.png) in [`code` and ![dog](d.png)](https://x.org) here.")
    assert image.text == "A ⟦1⟧cat⟦2⟧ in ⟦3⟧⟦4⟧ and ⟦5⟧dog⟦6⟧⟦7⟧ here."
    assert md.fill(image, "Un ⟦1⟧chat⟦2⟧ dans ⟦3⟧⟦4⟧ et ⟦5⟧chien⟦6⟧⟦7⟧ ici.")[0] == \
        "Un ![chat](c.png) dans [`code` et ![chien](d.png)](https://x.org) ici."
    assert md.fill(image, "Un ⟦1⟧chat⟦2⟧ dans ⟦4⟧ et chien ici.")[0] == \
        "Un ![chat](c.png) dans et chien ici. [`code` and ![dog](d.png)](https://x.org)", "an inner link goes with its outer one"
    [reference] = md.markdown_pieces("See [the docs][d] and [d].\n\n[d]: https://d.org\n")
    assert reference.text == "See ⟦1⟧the docs⟦2⟧ and ⟦3⟧." and md.fill(reference, "Voir ⟦1⟧la doc⟦2⟧ et ⟦3⟧.")[0] == \
        "Voir [la doc][d] et [d]."


def test_plain_text_pieces_are_lines_with_urls_kept():
    pieces = md.text_pieces("Hello there, see https://x.org/a.\n\n  # not a heading  \n42\n")
    assert [p.text for p in pieces] == ["Hello there, see ⟦1⟧.", "# not a heading"]
    assert md.fill(pieces[1], "# pas un titre")[0] == "# pas un titre"


def test_nothing_to_translate_and_same_language_are_refused_before_the_model_runs(store):
    with pytest.raises(UserError, match="nothing to translate"):
        TranslationJob(None, store, TranslationRequest("```\ncode\n```\n\n| 1 | 2 |\n|---|---|\n", "fr"))
    with pytest.raises(UserError, match="already in French .detected.; choose the source language"):
        TranslationJob(None, store, TranslationRequest("Le gardien du phare attendait la lumière du matin.", "fr"))
    with pytest.raises(UserError, match="already in French$"):
        TranslationJob(None, store, TranslationRequest("Hello there, my friend.", "fr", "French"))


def test_a_reply_being_written_is_shown_without_its_line_numbers():
    assert unnumbered("[1] Bonjour\n[2] le monde") == "Bonjour\nle monde"
    assert unnumbered("[1]") == "" and unnumbered("Sans numéro [3]") == "Sans numéro [3]"


def test_parse_numbered_replies():
    assert parse_numbered("[1] Un\n[2] Deux\nsuite", 2) == ["Un", "Deux suite"]
    assert parse_numbered("[1] Un\n[1] Deux", 2) is None
    assert parse_numbered("[1] Un", 2) is None
    assert parse_numbered("Voici: Bonjour", 1) == ["Voici: Bonjour"]
    assert parse_numbered("[1] Bonjour\n[2] inventé", 1) == ["Bonjour"]


def test_segments_respect_the_budget_and_rows_join_to_the_text():
    long = " ".join(f"Sentence number {n} is here." for n in range(60))
    source = md.normalize(f"# Title\n\n{long}\n\nShort one.\n\n| a | b |\n|---|---|\n| c | d |\n")
    pieces = md.markdown_pieces(source)
    count = lambda text: len(text.split())
    segments = plan_segments(pieces, 40, count)
    assert all(sum(count(u.text) for u in s) <= 40 for s in segments)
    long_units = [u for s in segments for u in s if u.piece == 1]
    assert len(long_units) > 5 and " ".join(u.text for u in long_units) == long


def test_languages_and_glossary_files(tmp_path):
    assert resolve_language("French") == "fr" and resolve_language("auto", allow_auto=True) == "auto"
    assert english_name("sv") == "Swedish" and english_name("ja") == "Japanese"  # for the model's prompt
    choices = dict((code, said) for said, code in language_choices())  # for the faces to word
    assert choices["ja"] == Message("language_ja")
    assert choices["sv"] == Message("language_less_supported", name="Swedish")
    assert words("ar", choices["sv"]) == "Swedish (دعم أضعف)" and words("ja", choices["ja"]) == "日本語"
    with pytest.raises(UserError, match="unknown language"):
        resolve_language("xx")
    path = tmp_path / "terms.csv"
    path.write_text("source,target\nlighthouse,phare\nkeeper;gardien\n\ncloud,nuage\n", encoding="utf-8")
    with pytest.raises(UserError, match="two columns"):
        read_glossary(str(path))
    path.write_text("source;target\nlighthouse;phare\n\"big, red\";rouge\n", encoding="utf-8")
    assert read_glossary(str(path)) == (("lighthouse", "phare"), ("big, red", "rouge"))
    assert glossary_from_rows([["a", "b"], ["", ""], ["a", "c"], [None, "x"]]) == (("a", "b"),)
    assert term_in("phare", "Le Phares brille") and not term_in("are", "Le phare")
    assert term_in("灯塔", "这是一座灯塔。")


def test_notes_about_cut_replies_are_written_for_a_person():
    assert [str(note) for note in cut_notes([Cut(0, 44, CAP)] * 3)] == [
        "3 replies were cut short at 44 tokens (the “Max reply tokens” setting): the end of part 1 may be missing."]
    assert [str(note) for note in cut_notes([Cut(2, 90, TWICE), Cut(0, 30, ROOM), Cut(3, 120, TWICE)])] == [
        "1 reply was cut short at 30 tokens (the room left in the context): the end of part 1 may be missing.",
        ("2 replies were cut short at 90 to 120 tokens (twice the length of the source; the model wrote more than "
         "a translation): the end of parts 3 and 4 may be missing.")]
    assert cut_notes([]) == []


# -- the real engine -----------------------------------------------------------------------------


def test_progress_inside_the_call_and_a_reply_in_the_wrong_language_is_caught(engine, store):
    """SmolLM2 often answers in English when asked for French: the result says so. While the call
    runs, the updates count the prompt tokens read, then the tokens written, with a measured ETA."""
    text = "The lighthouse keeper waited by the grey sea for the morning light."
    job = TranslationJob(engine, store, TranslationRequest(text, "fr", "en"), TranslateOptions(temperature=0, max_tokens=24))
    updates = list(job.run())
    calls = [u.call for u in updates if u.call is not None]
    phases = [call.phase for call in calls]
    assert phases[0] == READING and phases[-1] == WRITING and phases == sorted(phases), "read, then write"
    read = [call for call in calls if call.phase == READING]
    assert read[-1].done == read[-1].total > 20 and [c.done for c in read] == sorted(c.done for c in read)
    written = [call.done for call in calls if call.phase == WRITING]
    assert written == list(range(1, len(written) + 1)) and all(c.total == 24 for c in calls if c.phase == WRITING)
    assert any(u.eta_s for u in updates if u.call is not None and u.call.phase == WRITING), "an ETA while writing"
    assert "writing: 3 tokens (at most 24)" in [call_text(c) for c in calls]
    result = job.result
    assert result.language == LanguageCheck("fr", "en"), result.text
    assert [str(problem) for problem in result.problems] == [("1 reply was cut short at 24 tokens (the “Max reply tokens” setting): "
                                "the end of part 1 may be missing.")]


def test_structure_kept_with_the_real_model(engine, store, artifacts):
    result = translate(engine, store, TranslationRequest(DOCUMENT, "fr", "en", title="notes"), FAST)
    (artifacts / "translate-structure.md").write_text(result.text, encoding="utf-8")
    for kept in CODE + URLS:
        assert kept in result.text, kept
    assert counts(result.text) == counts(DOCUMENT) and result.structure_kept
    assert result.text.startswith("---\ntitle: Release notes\n")
    assert not result.stopped and result.source_language == "en" and result.engine_calls >= result.segments
    [saved] = store.translations()
    assert saved["target_language"] == "fr" and store.translation(saved["id"])["text"] == result.text


LINK_RE = re.compile(r"\[([^\]]+)\]\(https://example\.com/manual\)")


def test_a_link_comes_back_as_a_markdown_link_from_the_real_model(engine, store, artifacts):
    """The README's promise: links stay links. What SmolLM2 does with the markers varies; the output
    has the link either way, and never the bare "(https://…)" the old markers let through."""
    text = "Read [the manual](https://example.com/manual) before you start the engine."
    result = translate(engine, store, TranslationRequest(text, "fr", "en"), TranslateOptions(temperature=0, max_tokens=40))
    (artifacts / "translate-link.md").write_text(result.text, encoding="utf-8")
    assert len(LINK_RE.findall(result.text)) == 1, result.text
    assert result.text.count("https://example.com/manual") == 1 and "⟦" not in result.text, result.text


def texts(n: int) -> str:
    subjects = ["The lighthouse keeper", "The old fisherman", "A small boat", "The harbour master", "The storm"]
    return "\n\n".join(f"{subjects[i]} waited by the grey sea for the morning light." for i in range(n))


def test_a_broken_numbering_counts_the_calls_it_takes_and_the_time_left_counts_them(engine, store):
    """Four paragraphs in one part; the numbered reply is cut at 8 tokens, so the part is asked
    again paragraph by paragraph. The request count grows to 5 when that happens and counts every
    call made; while a paragraph is written, the time left includes the paragraphs after it."""
    counting = CountingEngine(engine)
    job = TranslationJob(counting, store, TranslationRequest(texts(4), "fr", "en"), FAST)
    assert [len(segment) for segment in job.segments] == [4] and job.request_count() == (0, 1)
    seen = []
    for update in job.run():
        if update.call is not None:
            seen.append((job.request_count(), len(job.requests_left()), update.eta_s, job.calls.eta_s(0)))
    assert counting.calls == 5 and job.result.engine_calls == 5
    assert sorted({(count, left) for count, left, _, _ in seen}) == [
        ((1, 1), 0), ((2, 5), 3), ((3, 5), 2), ((4, 5), 1), ((5, 5), 0)]
    later = [(eta, alone) for (_, total), left, eta, alone in seen if left and eta is not None]
    assert later and all(eta > alone for eta, alone in later), "the paragraphs left add to the time left"


def test_resume_after_stop_redoes_no_finished_segment(engine, store):
    counting = CountingEngine(engine)
    request = TranslationRequest(texts(3), "fr", "en")
    options = replace(FAST, segment_tokens=16)  # one paragraph per segment
    job = TranslationJob(counting, store, request, options)
    assert len(job.segments) == 3
    def stopped_after_two(progress, cancel):
        for update in job.run(cancel):
            if update.segment is None and update.progress.done == 2:
                cancel.cancel()  # Stop pressed after the second segment
            yield update
        return job.result

    outcome = Job(stopped_after_two).run()
    assert outcome.stopped and outcome.value is job.result and counting.calls == 2
    [saved] = store.translations()
    assert saved["status"] == "stopped" and saved["segments_done"] == 2

    counting.calls = 0
    again = TranslationJob(counting, store, request, options)
    for _ in again.run():
        pass
    assert counting.calls == 1 and again.result.cached_segments == 2 and not again.result.stopped
    [saved] = store.translations()
    assert saved["status"] == "complete" and saved["segments_done"] == 3, "the same row is updated"


def test_a_document_translation_stopped_while_writing_goes_on_from_its_written_tokens(tmp_path, engine, store):
    """A stored document in three parts: Stop while the second part is written, translate again: the
    first part is not translated again, and the second goes on from the tokens it wrote (they end
    its prompt, their K/V reused): the engine writes only the rest; the page's line says so."""
    path = tmp_path / "harbour.md"
    path.write_text(texts(3), encoding="utf-8")
    document_id, _ = store.add(read_document(path))
    document = store.document(document_id)
    request = TranslationRequest(document["markdown"], "fr", "en", True, (), document["title"], document_id)
    options = TranslateOptions(segment_tokens=16, temperature=0, max_tokens=40)  # one paragraph a part

    first = RecordingEngine(engine)
    job = TranslationJob(first, store, request, options)
    assert len(job.segments) == 3
    cancel = CancelToken()
    for update in job.run(cancel):
        call = update.call
        if update.segment == 1 and call is not None and call.phase == WRITING and call.done >= 4:
            cancel.cancel()  # Stop pressed while the second part is written
    assert job.result.stopped and len(first.made) == 2
    prompt, cut = first.made[1]
    written = cut.token_ids
    assert len(written) >= 4 and cut.stats.completion_tokens == len(written)

    second = RecordingEngine(engine)
    again = TranslationJob(second, store, request, options)
    lines = [call_text(u.call) for u in again.run() if u.call is not None and u.call.phase == WRITING]
    result = again.result
    assert not result.stopped and result.cached_segments == 1, "the first part is not translated again"
    assert len(second.made) == result.engine_calls == len(again.segments) - 1
    prompt_again, resumed = second.made[0]
    assert prompt_again == prompt + written, "the second part goes on from its written tokens"
    assert resumed.stats.cached_tokens >= len(prompt_again) - 1, "their K/V is reused"
    assert resumed.stats.completion_tokens == len(resumed.token_ids) <= options.max_tokens - len(written)
    assert again.calls.resumed_tokens == len(written)
    assert again.calls.generated_tokens == sum(c.stats.completion_tokens for _, c in second.made)
    assert f"going on from the {len(written)} written before the Stop" in lines[0], lines[:3]
    part = engine.detokenize(written + resumed.token_ids)
    assert again.outputs[1] == parse_numbered(part, 1), "the part is its written tokens and the rest, once each"
    [saved] = store.translations()
    assert saved["status"] == "complete" and saved["segments_done"] == len(again.segments)


def test_a_changed_glossary_redoes_only_the_segments_with_that_term(engine, store):
    counting = CountingEngine(engine)
    options = replace(FAST, segment_tokens=16)

    def run(glossary):
        counting.calls = 0
        return translate(counting, store, TranslationRequest(texts(2), "fr", "en", glossary=glossary), options)

    run((("lighthouse", "phare"),))
    assert counting.calls == 2
    run((("lighthouse", "fanal"),))
    assert counting.calls == 1, "only the paragraph that has 'lighthouse'"
    result = run((("lighthouse", "fanal"), ("volcano", "volcan")))
    assert counting.calls == 0, "a term that occurs nowhere changes nothing"
    assert result.cached_segments == 2


def test_glossary_misses_name_the_term_and_segment(engine, store):
    job = TranslationJob(engine, store, TranslationRequest(texts(2), "fr", "en", glossary=(
        ("lighthouse", "phare"), ("fisherman", "pêcheur"), ("volcano", "volcan"))), replace(FAST, segment_tokens=16))
    job.outputs = [["Le gardien du phare attendait."], ["Le vieux marin attendait."]]
    assert [(m.source, m.segments) for m in job.misses()] == [("fisherman", (2,))]


def test_cli_translates_text_and_files(home, tmp_path):
    args = ["--model", "smollm2", "--ctx", "2048", "--temperature", "0", "--max-tokens", "8"]
    done = run_cli("translate", "--text", "Please run `make test` now and then see <https://x.org> for the whole report.", "--to", "de", *args, "--json",
                   home=home)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "`make test`" in out["translation"] and "<https://x.org>" in out["translation"]
    assert out["source_language"] == "en" and out["segments"] == 1 and "1/1 parts" in done.stderr
    assert f"call {out['engine_calls']} of {out['engine_calls']}" in done.stderr, done.stderr

    source, glossary, target = tmp_path / "notes.md", tmp_path / "terms.csv", tmp_path / "notes.fr.md"
    source.write_text("# Notes\n\n```\nkeep me\n```\n\nThe lighthouse is white.\n", encoding="utf-8")
    glossary.write_text("lighthouse,phare\n", encoding="utf-8")
    done = run_cli("translate", str(source), "--to", "French", "-o", str(target), "--glossary", str(glossary),
                   *args, home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "```\nkeep me\n```" in target.read_text(encoding="utf-8")

    for bad, message in [(["--text", "Hi", "--to", "xx"], "unknown language"),
                         ([str(source), "--text", "Hi", "--to", "fr"], "not both")]:
        done = run_cli("translate", *bad, *args, home=home)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
