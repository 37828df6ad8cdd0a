"""Tekken against mistral-common's Tekkenizer (the oracle), and rebuilt from a GGUF."""

import gzip
import json
import random
from pathlib import Path

import pytest
import regex
from mistral_common.tokens.tokenizers.tekken import Tekkenizer
from tekken_corpus import CORPUS

from app.base.errors import UserError
from app.nemo.tekken import TEKKEN_PATTERN, Tekken, write_vocab_gguf

ORACLE_JSON = Path(__import__("mistral_common").__file__).parent / "data" / "tekken_240718.json"



@pytest.fixture(scope="session")
def oracle() -> Tekkenizer:
    return Tekkenizer.from_file(ORACLE_JSON)


@pytest.fixture(scope="session")
def vocab_gguf(tekken, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "nemo-vocab.gguf"
    write_vocab_gguf(tekken, path)
    return path


def fuzz_texts(count: int = 300, seed: int = 7) -> list[str]:
    """Random mixes of the corpus's characters, spaces, newlines and digits."""
    rng = random.Random(seed)
    alphabet = "".join(CORPUS.values()) + "   \n\n\t\r0123456789"
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 80))) for _ in range(count)]


def test_shipped_vocabulary_is_nemos(tekken):
    full = Tekken.from_json(ORACLE_JSON)
    assert (tekken.vocab_size, tekken.num_special) == (131072, 1000)
    assert [tekken.token_bytes(i) for i in range(tekken.vocab_size)] == [
        full.token_bytes(i) for i in range(full.vocab_size)
    ]
    assert tekken.special_tokens == full.special_tokens
    assert json.loads(ORACLE_JSON.read_text())["config"]["pattern"] == TEKKEN_PATTERN


@pytest.mark.parametrize("language", CORPUS)
def test_encode_matches_oracle(tekken, oracle, language):
    text = CORPUS[language]
    ids = tekken.encode(text)
    assert ids == oracle.encode(text, bos=False, eos=False)
    assert tekken.count(text) == len(ids)
    assert tekken.decode(ids) == text == oracle.decode(ids)


def test_fuzz_matches_oracle(tekken, oracle):
    mismatches = [t for t in fuzz_texts() if tekken.encode(t) != oracle.encode(t, bos=False, eos=False)]
    assert mismatches == []


def test_known_ids(tekken):
    assert tekken.encode("Hello") == [22177]
    assert tekken.special_tokens[:12] == [
        "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>",
    ]  # fmt: skip
    assert tekken.special_tokens[999] == "<SPECIAL_999>"


def test_text_never_becomes_control_tokens(tekken):
    ids = tekken.encode(CORPUS["controls"] + "".join(tekken.special_tokens[:20]))
    assert min(ids) >= tekken.num_special


def test_control_ids_decode_to_nothing(tekken):
    assert tekken.token_bytes(2) == b""
    assert tekken.decode([1, 3, *tekken.encode("Hi"), 4, 2]) == "Hi"
    with pytest.raises(ValueError):
        tekken.token_bytes(tekken.vocab_size)


@pytest.mark.parametrize("text", [CORPUS["emoji"], CORPUS["hi"], CORPUS["zh"] + CORPUS["combining"]])
def test_stream_decoder_holds_back_split_characters(tekken, text):
    ids = tekken.encode(text)
    decoder = tekken.stream_decoder()
    deltas = [decoder.feed(i) for i in [1, *ids, 2]] + [decoder.flush()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_emoji_tokens_end_inside_characters(tekken):
    """So the stream decoder test above really holds back split UTF-8."""
    pieces = [tekken.token_bytes(i) for i in tekken.encode(CORPUS["emoji"])]
    assert any(piece.decode("utf-8", errors="ignore").encode() != piece for piece in pieces)


def test_stream_decoder_flushes_a_broken_tail(tekken):
    decoder = tekken.stream_decoder()
    first_byte = 1000 + "🎉".encode()[0]  # ranks 0..255 are the single bytes
    assert tekken.token_bytes(first_byte) == b"\xf0"
    assert decoder.feed(first_byte) == ""
    assert decoder.flush() == "\ufffd"


def test_gguf_round_trip(tekken, vocab_gguf):
    rebuilt = Tekken.from_gguf(vocab_gguf)
    assert rebuilt.special_tokens == tekken.special_tokens
    assert rebuilt.gguf_tokens() == tekken.gguf_tokens()
    for text in [*CORPUS.values(), *fuzz_texts(50)]:
        assert rebuilt.encode(text) == tekken.encode(text)
    assert Tekken.from_gguf(vocab_gguf) is rebuilt  # built once per file


def test_gguf_vocabulary_shape(tekken):
    tokens, types = tekken.gguf_tokens(), tekken.gguf_token_types()
    assert len(tokens) == len(types) == len(set(tokens)) == 131072
    assert types[:1000] == [3] * 1000 and set(types[1000:]) == {1}
    assert tokens[1000 + ord("A")] == "A" and tokens[1000 + ord(" ")] == "Ġ"
    merges = tekken.gguf_merges()
    assert merges[0] == "Ġ Ġ" and all(m.count(" ") == 1 for m in merges)


def merge_ranks(tekken) -> dict[tuple[bytes, bytes], int]:
    """`gguf_merges()` as byte pairs (ranks 0..255 are the single bytes, so they give the map)."""
    byte_of = {token: b for b, token in enumerate(tekken.gguf_tokens()[1000:1256])}
    ranks = {}
    for rank, merge in enumerate(tekken.gguf_merges()):
        left, right = merge.split(" ")  # GPT-2 strings hold no plain space
        ranks[bytes(map(byte_of.get, left)), bytes(map(byte_of.get, right))] = rank
    return ranks


def merges_bpe(piece: bytes, ranks: dict) -> list[bytes]:
    """llama.cpp's BPE over merges: join the lowest-ranked adjacent pair (leftmost on ties)."""
    parts = [bytes([b]) for b in piece]
    while len(parts) > 1:
        rank, i = min((ranks.get((parts[i], parts[i + 1]), len(ranks)), i) for i in range(len(parts) - 1))
        if rank == len(ranks):
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def test_merges_reproduce_the_ranks(tekken):
    """BPE over the recovered merges gives tiktoken's tokens: every 5th vocabulary token comes
    back whole (all 130,072 do; that takes ~6 s), and the corpus's pieces tokenize the same."""
    ranks = merge_ranks(tekken)
    assert len(ranks) == len(tekken.gguf_merges())
    for token_id in range(1000, tekken.vocab_size, 5):
        token = tekken.token_bytes(token_id)
        assert merges_bpe(token, ranks) == [token], token_id
    for piece in regex.findall(TEKKEN_PATTERN, "".join(CORPUS.values())):
        assert merges_bpe(piece.encode(), ranks) == [tekken.token_bytes(i) for i in tekken.encode(piece)]


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="nope.json"):
        Tekken.from_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"vocab": []}')
    with pytest.raises(UserError, match="bad.json"):
        Tekken.from_json(bad)
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(gzip.compress(b"{not json"))
    with pytest.raises(UserError, match="broken.json.gz"):
        Tekken.from_json(broken)
    with pytest.raises(UserError, match="bad.json"):
        Tekken.from_gguf(bad)
    with pytest.raises(UserError, match="nope.gguf"):
        Tekken.from_gguf(tmp_path / "nope.gguf")


def test_gguf_without_tekken_vocabulary(tmp_path):
    import gguf

    path = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    with pytest.raises(UserError, match="other.gguf: its vocabulary is not Tekken"):
        Tekken.from_gguf(path)
