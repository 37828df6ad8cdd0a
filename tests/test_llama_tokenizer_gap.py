"""Where llama.cpp's own tokenizer (pre = "tekken") disagrees with Tekken, on a NeMo vocabulary GGUF.

The measured table is kept in docs/tokenizer-gap.md; this test re-measures it and fails when the
document is out of date.
"""

from pathlib import Path

import llama_cpp
import pytest
from tekken_corpus import CORPUS

from app.nemo.tekken import write_vocab_gguf

DOC = Path(__file__).parent.parent / "docs" / "tokenizer-gap.md"



@pytest.fixture(scope="module")
def llama(tekken, tmp_path_factory):
    path = tmp_path_factory.mktemp("gap") / "nemo-vocab.gguf"
    write_vocab_gguf(tekken, path)
    model = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    yield model
    model.close()


def llama_ids(llama, text: str) -> list[int]:
    return llama.tokenize(text.encode(), add_bos=False, special=False)


def measure(tekken, llama) -> dict[str, tuple[list[int], list[int]]]:
    """Per sample: Tekken's ids and llama.cpp's ids."""
    return {name: (tekken.encode(text), llama_ids(llama, text)) for name, text in CORPUS.items()}


def render(measured) -> str:
    lines = ["| sample | characters | Tekken tokens | llama.cpp tokens | same ids |", "|---|---:|---:|---:|---|"]
    for name, (ours, theirs) in measured.items():
        same = "yes" if theirs == ours else "**no**"
        lines.append(f"| {name} | {len(CORPUS[name])} | {len(ours)} | {len(theirs)} | {same} |")
    return "\n".join(lines)


def test_llama_tokenizer_gap(tekken, llama):
    measured = measure(tekken, llama)
    differing = {name for name, (ours, theirs) in measured.items() if ours != theirs}
    assert differing == {"hi", "th"}  # all else matches: other scripts, code, emoji, typed controls
    assert all(len(measured[name][1]) > len(measured[name][0]) for name in differing)
    table = render(measured)
    assert table in DOC.read_text(), f"docs/tokenizer-gap.md is out of date; measured:\n{table}"
