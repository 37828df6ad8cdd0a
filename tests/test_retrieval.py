"""Questions asked of stored documents on the real engine (SmolLM2; the tiny NeMo GGUF for NeMo's
prompt path): Quick mode finds a planted sentence in a 40-page PDF and cites its page with quotes
verbatim on that page; two documents; Whole mode reads every chunk, and after a Stop only the
unread ones, its stopped call going on from its written tokens; the CLI. Checked quotes in pure logic: test_citations.py."""

from __future__ import annotations

import json
import random

import pytest
from pypdf import PdfReader

from app.base.jobs import CancelToken
from app.documents.reading import read_document
from app.history import History
from app.runtime import SamplingOptions
from app.services.citations import normalized
from app.services.engine_calls import WRITING
from app.services.retrieval import DONE, READING, STOPPED, ask
from app.storage.document_store import DocumentStore
from conftest import run_cli
from test_documents import make_pdf
from corpora import long_markdown
from test_summarize import RecordingEngine, run_to_end, small_engine, stopped_at, writing  # noqa: F401 (a fixture)

PLANTED_PAGE = 27
PLANTED = "The quartermaster buried the obsidian astrolabe beneath the juniper windmill at Pellucid Cove."
QUESTION = "Where did the quartermaster bury the obsidian astrolabe?"
SHORT = SamplingOptions(temperature=0.0, max_tokens=64)


def filler_pages(count: int, seed: int = 3) -> list[str]:
    """Pages of plain sentences about towns, none with the planted words."""
    rng = random.Random(seed)
    towns = ["Ashford", "Brookmere", "Caldwell", "Dunmore", "Elmstead", "Fairhaven", "Glenrock", "Harlow"]
    acts = ["built a bridge", "opened a school", "held a market", "repaired the mill", "planted orchards"]
    return [" ".join(f"In {rng.randint(1700, 1950)} the people of {rng.choice(towns)} {rng.choice(acts)} "
                     f"near the river {rng.choice(towns)}." for _ in range(14)) for _ in range(count)]


@pytest.fixture(scope="module")
def planted_pdf(tmp_path_factory):
    pages = filler_pages(40)
    pages[PLANTED_PAGE - 1] = pages[PLANTED_PAGE - 1] + " " + PLANTED + " " + pages[0]
    return make_pdf(tmp_path_factory.mktemp("ask") / "ledger.pdf", pages, title="Harbour ledger")


@pytest.fixture(scope="module")
def tiny_nemo_engine(tmp_path_factory):
    """A tiny random-weight model with NeMo's architecture and Tekken vocabulary, loaded."""
    from app.convert_gguf import convert
    from app.engine.llama import LlamaEngine
    from app.runtime import LoadOptions
    from tiny_nemo import make_weights, write_native

    root = tmp_path_factory.mktemp("tiny-nemo")
    path = convert(write_native(root / "native", make_weights()), root / "tiny-nemo.gguf", "f16").path
    engine = LlamaEngine()
    engine.load(LoadOptions(str(path), n_ctx=2048, n_batch=256))
    yield engine
    engine.unload()


@pytest.fixture()
def store(tmp_path) -> DocumentStore:
    return DocumentStore(History(tmp_path / "nemo-chat.db"))


def page_texts(path) -> list[str]:
    return [normalized(page.extract_text() or "") for page in PdfReader(str(path)).pages]


def assert_quotes_on_their_pages(result, path, document_id):
    pages = page_texts(path)
    for source in result.sources:
        if source.document_id == document_id:
            assert normalized(source.quote) in pages[source.page - 1], (source, result.answer)


def test_quick_mode_cites_the_page_of_a_planted_sentence_with_quotes_verbatim_on_it(planted_pdf, store, engine):
    document = read_document(planted_pdf)
    assert document.pages == 40
    document_id, _ = store.add(document)
    updates = list(ask(engine, store, [document_id], QUESTION, sampling=SHORT))
    result = updates[-1].result
    assert result is not None and not result.stopped and result.answer.strip()
    assert PLANTED_PAGE in [s.page for s in result.sources], (result.sources, result.answer)
    assert all(s.document == "ledger.pdf" and s.page for s in result.sources)
    assert any("obsidian astrolabe" in s.quote for s in result.sources if s.page == PLANTED_PAGE)
    assert_quotes_on_their_pages(result, planted_pdf, document_id)
    assert 1 <= result.chunks_read < result.chunks and result.chunks >= 40
    assert updates[-1].progress.what == DONE
    streamed = [u.text for u in updates if u.result is None and u.text]
    assert streamed and result.answer.startswith(streamed[0][:5]), "the answer streams in"


def test_quick_mode_on_a_nemo_gguf(planted_pdf, store, tiny_nemo_engine):
    """NeMo's prompt path (Tekken ids): random weights answer nonsense, the source is still the page."""
    document_id, _ = store.add(read_document(planted_pdf))
    result = run_to_end(ask(tiny_nemo_engine, store, [document_id], QUESTION, sampling=SHORT))
    assert not result.stopped and [s.page for s in result.sources][:1] == [PLANTED_PAGE]
    assert_quotes_on_their_pages(result, planted_pdf, document_id)


def test_two_documents_a_question_about_the_second_cites_only_the_second(tmp_path, planted_pdf, store, engine):
    chronicle = tmp_path / "chronicle.md"
    chronicle.write_text(long_markdown(1500), encoding="utf-8")
    first, _ = store.add(read_document(chronicle))
    second, _ = store.add(read_document(planted_pdf))
    result = run_to_end(ask(engine, store, [first, second], QUESTION, sampling=SHORT))
    assert result.sources and {s.document_id for s in result.sources} == {second}, result.sources
    assert result.chunks == len(store.chunks(first)) + len(store.chunks(second))
    assert_quotes_on_their_pages(result, planted_pdf, second)


@pytest.mark.timeout(900)
def test_whole_mode_stopped_while_a_map_call_writes_reads_only_the_unread_chunks_and_goes_on_from_its_tokens(
        tmp_path, store, small_engine):
    """Whole mode, Stop while the third map call writes (two are done), ask again: the two are kept,
    every other chunk is read, and the stopped call goes on from the tokens it wrote (they end its
    prompt, their K/V reused): the engine writes only the rest of it. Then every chunk was read."""
    path = tmp_path / "chronicle.md"
    path.write_text(long_markdown(1400) + "\n## Chapter 99: Harlow\n\n" + PLANTED + "\n", encoding="utf-8")
    document_id, _ = store.add(read_document(path))
    chunks = len(store.chunks(document_id))
    run = lambda engine, cancel: ask(engine, store, [document_id], QUESTION, True, SHORT, cancel)  # noqa: E731

    first, cancel = RecordingEngine(small_engine), CancelToken()
    updates = stopped_at(run(first, cancel), cancel, lambda u: len(first.made) >= 3 and writing(u, 4, READING))
    stopped = updates[-1].result
    assert stopped.stopped and stopped.answer == "" and updates[-1].progress.what == STOPPED
    assert 0 < stopped.chunks_read < chunks, "stopped half way"
    done_before = len(first.made) - 1
    prompt, cut = first.made[-1]
    written = cut.token_ids
    assert len(written) >= 4 and cut.stats.completion_tokens == len(written)

    second = RecordingEngine(small_engine)
    updates = list(run(second, CancelToken()))
    result = updates[-1].result
    assert not result.stopped and result.chunks_read == result.chunks == chunks
    assert result.cached_calls == done_before, "the map calls done before the Stop are not made again"
    assert len(second.made) == result.engine_calls, "the other map calls, then the answer"
    prompt_again, resumed = second.made[0]
    assert prompt_again == prompt + written, "the stopped map call goes on from its written tokens"
    assert resumed.stats.cached_tokens >= len(prompt_again) - 1, "their K/V is reused"
    assert resumed.stats.completion_tokens == len(resumed.token_ids) <= SHORT.max_tokens - len(written)
    assert result.resumed_tokens == len(written)
    assert result.generated_tokens == sum(c.stats.completion_tokens for _, c in second.made), \
        "the engine wrote only what was missing"
    going_on = [u.call for u in updates if u.call is not None and u.call.phase == WRITING and u.call.resumed]
    assert going_on and going_on[0].done > going_on[0].resumed == len(written), "the line counts on from them"
    read = [u.progress.done for u in updates]
    assert read == sorted(read) and updates[0].progress.total == chunks, "progress counts chunks read of all"
    assert updates[-2].progress.done == chunks and updates[-1].progress.what == DONE
    texts = {n: normalized(c.text) for n, c in enumerate(store.chunks(document_id))}
    for source in result.sources:
        assert normalized(source.quote) in texts[source.position], source


def test_cli_ask_reads_the_file_then_asks_by_id(tmp_path, home, planted_pdf):
    args = ["--model", "smollm2", "--ctx", "2048", "--temperature", "0", "--max-tokens", "48", "--json"]
    done = run_cli("ask", QUESTION, "--doc", str(planted_pdf), *args, home=home)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"answer", "sources", "chunks_read", "chunks", "took_s"} and out["chunks"] >= 40
    assert out["sources"] and set(out["sources"][0]) >= {"document_id", "document", "page", "section", "quote"}
    assert PLANTED_PAGE in [s["page"] for s in out["sources"]]
    again = json.loads(run_cli("ask", QUESTION, "--doc", str(out["sources"][0]["document_id"]), *args,
                               home=home).stdout)
    assert again["answer"] == out["answer"] and again["engine_calls"] == 0, "the same question is kept"

    missing = run_cli("ask", QUESTION, "--doc", str(tmp_path / "nope.pdf"), *args, home=home)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope.pdf" in missing.stderr
    unknown = run_cli("ask", QUESTION, "--doc", "999", *args, home=home)
    assert unknown.returncode == 2 and "document 999 not found" in unknown.stderr


def test_a_question_stopped_before_its_call_says_so(store, engine, planted_pdf):
    document_id, _ = store.add(read_document(planted_pdf))
    cancel = CancelToken()
    cancel.cancel()
    updates = list(ask(engine, store, [document_id], QUESTION, cancel=cancel))
    assert updates[-1].result.stopped and updates[-1].result.chunks_read == 0
    assert updates[-1].progress.what == STOPPED
