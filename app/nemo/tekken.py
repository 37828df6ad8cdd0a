"""Mistral NeMo's Tekken tokenizer on tiktoken, from a tekken.json or from a GGUF's vocabulary.

Model ids 0..999 are control tokens; text tokens are tiktoken ranks + 1000. Text never encodes
to a control id. The vocabulary shipped in `app/data/tekken_240718.json.gz` is NeMo's
`tekken_240718.json` from the PyPI package mistral-common (Apache-2.0, Mistral AI), cut to the
130,072 ranks NeMo uses and without the redundant `token_str` fields.
"""

from __future__ import annotations

import base64
import codecs
import gzip
import json
from functools import cache, cached_property
from pathlib import Path
from typing import Iterable

import tiktoken

from app.base.errors import UserError
from app.base.gguf_info import read_gguf_header

UNK, BOS, EOS, INST, INST_END = 0, 1, 2, 3, 4
TOOLS, TOOLS_END, TOOL_RESULTS, TOOL_RESULTS_END, TOOL_CALLS, PAD = 5, 6, 7, 8, 9, 11

NAMED_CONTROLS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
    "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
)  # fmt: skip

# NeMo's `config.pattern`; a GGUF names it only as `tokenizer.ggml.pre = "tekken"`.
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DEFAULT_VOCAB = Path(__file__).parent.parent / "data" / "tekken_240718.json.gz"

GGUF_CONTROL, GGUF_NORMAL = 3, 1  # gguf.TokenType values


def control_tokens(count: int) -> list[str]:
    """The default control token strings: the named ones, then `<SPECIAL_n>` fillers."""
    return [*NAMED_CONTROLS, *(f"<SPECIAL_{i}>" for i in range(len(NAMED_CONTROLS), count))][:count]


@cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (used by GGUF vocabularies)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(others)})
    return mapping


@cache
def _unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in _byte_to_unicode().items()}


def _to_gpt2(token: bytes) -> str:
    table = _byte_to_unicode()
    return "".join(table[b] for b in token)


def gpt2_token_bytes(token: str) -> bytes:
    table = _unicode_to_byte()
    return bytes(table[c] for c in token)


class Tekken:
    """A Tekken vocabulary: encode, decode and count text; describe itself for a GGUF."""

    def __init__(self, ranks: list[bytes], pattern: str, special_tokens: list[str], source: str = "") -> None:
        self.num_special = len(special_tokens)
        self.vocab_size = self.num_special + len(ranks)
        self.special_tokens = list(special_tokens)
        self.source = source
        self._ranks = ranks
        self._encoding = tiktoken.Encoding(
            name=f"tekken:{source}",
            pat_str=pattern,
            mergeable_ranks={token: rank for rank, token in enumerate(ranks)},
            special_tokens={},
        )

    @classmethod
    def from_json(cls, path: str | Path) -> Tekken:
        """A Tekken from a tekken.json (or .json.gz); built once per file."""
        return _from_json(str(Path(path).resolve()))

    @classmethod
    def from_gguf(cls, path: str | Path) -> Tekken:
        """A Tekken rebuilt from a GGUF's `tokenizer.ggml.tokens`; built once per file."""
        return _from_gguf(str(Path(path).resolve()))

    @classmethod
    def default(cls) -> Tekken:
        """NeMo's Tekken, from the vocabulary shipped with the app."""
        return cls.from_json(DEFAULT_VOCAB)

    def encode(self, text: str) -> list[int]:
        """Model ids of `text`; control strings in the text stay plain text."""
        offset = self.num_special
        return [rank + offset for rank in self._encoding.encode_ordinary(text)]

    def count(self, text: str) -> int:
        """How many tokens `text` takes."""
        return len(self._encoding.encode_ordinary(text))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; control tokens give no text, broken UTF-8 gives U+FFFD."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for in text (empty for control tokens)."""
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary (0..{self.vocab_size - 1})")
        return b"" if token_id < self.num_special else self._ranks[token_id - self.num_special]

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for ids arriving one at a time."""
        return StreamDecoder(self)

    def gguf_tokens(self) -> list[str]:
        """All tokens as a GGUF stores them: control strings, then GPT-2 byte-to-unicode strings."""
        return [*self.special_tokens, *map(_to_gpt2, self._ranks)]

    def gguf_token_types(self) -> list[int]:
        """CONTROL for the control tokens, NORMAL for the rest."""
        return [GGUF_CONTROL] * self.num_special + [GGUF_NORMAL] * len(self._ranks)

    def gguf_merges(self) -> list[str]:
        """BPE merges "left right" ordered so that llama.cpp's BPE reproduces the Tekken ranks.

        Every split of a token into two shorter tokens is a merge, ranked by the merged token, then
        by the ranks of its parts: tiktoken joins any adjacent pair whose concatenation is a token.
        """
        return list(self._merges)

    @cached_property
    def _merges(self) -> tuple[str, ...]:
        rank_of = {token: rank for rank, token in enumerate(self._ranks)}
        merges = []
        for token in self._ranks:
            splits = [
                (rank_of[token[:i]], rank_of[token[i:]], i)
                for i in range(1, len(token))
                if token[:i] in rank_of and token[i:] in rank_of
            ]
            merges.extend(f"{_to_gpt2(token[:i])} {_to_gpt2(token[i:])}" for _, _, i in sorted(splits))
        return tuple(merges)

    def write_gguf_vocab(self, writer) -> None:
        """Add the tokenizer keys of a NeMo GGUF to a `gguf.GGUFWriter`."""
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("tekken")
        writer.add_token_list(self.gguf_tokens())
        writer.add_token_types(self.gguf_token_types())
        writer.add_token_merges(self.gguf_merges())
        writer.add_bos_token_id(BOS)
        writer.add_eos_token_id(EOS)
        writer.add_unk_token_id(UNK)
        writer.add_pad_token_id(PAD)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)


def write_vocab_gguf(tekken: Tekken, path: str | Path) -> None:
    """A GGUF with NeMo's llama hyper-parameters and vocabulary but no tensors.

    llama.cpp loads it with `vocab_only=True`: enough to run llama.cpp's own tokenizer.
    """
    import gguf  # slow to import (~1.5 s); only this helper needs it

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(131072)
    writer.add_embedding_length(5120)
    writer.add_block_count(40)
    writer.add_feed_forward_length(14336)
    writer.add_head_count(32)
    writer.add_head_count_kv(8)
    writer.add_key_length(128)
    writer.add_value_length(128)
    writer.add_rope_dimension_count(128)
    writer.add_rope_freq_base(1e6)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(tekken.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tekken.write_gguf_vocab(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


class StreamDecoder:
    """Turns ids fed one at a time into text deltas, holding back split UTF-8 sequences."""

    def __init__(self, tekken: Tekken) -> None:
        self._tekken = tekken
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """The new text that `token_id` completes (often "", for control or partial tokens)."""
        return self._utf8.decode(self._tekken.token_bytes(token_id))

    def flush(self) -> str:
        """Whatever is still held back, at the end of the stream."""
        return self._utf8.decode(b"", final=True)


def _read_json(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError("tekken_not_found", path=str(path)) from None
    except (OSError, ValueError) as e:
        raise UserError("tekken_unreadable", path=str(path), error=str(e)) from None


@cache
def _from_json(path: str) -> Tekken:
    data = _read_json(Path(path))
    try:
        config = data["config"]
        num_special = config["default_num_special_tokens"]
        vocab = sorted(data["vocab"], key=lambda entry: entry["rank"])[: config["default_vocab_size"] - num_special]
        ranks = [base64.b64decode(entry["token_bytes"]) for entry in vocab]
        special = data.get("special_tokens")
        specials = control_tokens(num_special)
        for entry in special or ():
            specials[entry["rank"]] = entry["token_str"]
        return Tekken(ranks, config["pattern"], specials, source=path)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise UserError("tekken_not_tekken_file", path=str(path), error=f"{type(e).__name__}: {e}") from None


@cache
def _from_gguf(path: str) -> Tekken:
    meta, _tensors = read_gguf_header(path)
    if meta.get("tokenizer.ggml.model") != "gpt2" or meta.get("tokenizer.ggml.pre") != "tekken":
        raise UserError("tekken_not_tekken_vocab", path=str(path))
    tokens = meta.get("tokenizer.ggml.tokens", [])
    types = meta.get("tokenizer.ggml.token_type", [])
    if not tokens or len(types) != len(tokens):
        raise UserError("tekken_no_token_types", path=str(path))
    num_special = next((i for i, kind in enumerate(types) if kind == GGUF_NORMAL), len(types))
    try:
        ranks = [gpt2_token_bytes(token) for token in tokens[num_special:]]
    except KeyError:
        raise UserError("tekken_not_bpe", path=str(path)) from None
    return Tekken(ranks, TEKKEN_PATTERN, tokens[:num_special], source=path)


