"""The GGUF converter on a tiny NeMo: llama.cpp runs its output like a NumPy reference of the model."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil

import gguf
import jinja2.sandbox
import numpy as np
import pytest
from llama_cpp import Llama

from conftest import run_cli

from app import convert_gguf
from app.nemo.checkpoint import Checkpoint, to_float32
from app.convert_gguf import convert
from app.base.errors import UserError
from app.base.jobs import Job
from app.nemo.tekken import Tekken
from tiny_nemo import (
    Tiny, as_bf16, bf16_bytes, e4m3_value, forward, fp8_block, hf_config, hf_name, make_weights, tekken_json,
    gguf_f32_tensor, read_gguf, to_e4m3, to_hf, write_hf, write_native, write_safetensors,
)  # fmt: skip

TEXTS = {
    "en": "The quick brown fox jumps over the lazy dog, then naps for 25 minutes.",
    "fr": "Le cœur a ses raisons que la raison ne connaît point. Où est la gare, s'il vous plaît ?",
    "de": "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich; Straße, Größe, Übermaß.",
}


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return make_weights()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, weights):
    """The tiny NeMo as a sharded HF folder and as a Mistral-native folder."""
    root = tmp_path_factory.mktemp("tiny")
    return {"hf": write_hf(root / "hf", weights), "native": write_native(root / "native", weights)}


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    """converted(layout, outtype, **options) -> ConvertResult, each conversion done once."""
    out, done = tmp_path_factory.mktemp("gguf"), {}

    def get(layout: str, outtype: str, **options):
        key = (layout, outtype, *sorted(options.items()))
        if key not in done:
            done[key] = convert(tiny[layout], out / f"{layout}-{outtype}.gguf", outtype, **options)
        return done[key]

    return get


@pytest.fixture(scope="module")
def vocab_only(converted) -> Llama:
    """llama.cpp's view of the converted vocabulary and metadata."""
    llm = Llama(str(converted("hf", "f32").path), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def tokens() -> list[int]:
    return [1, *Tekken.from_json(tekken_json()).encode(TEXTS["en"] + " " + TEXTS["fr"])][:40]


def llama_logits(path, tokens: list[int]) -> np.ndarray:
    llm = Llama(str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=2)
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    llm.close()
    return logits


def agreement(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """max |difference| (absolute and over the reference's std), rms difference over std, argmax, correlation."""
    diff, spread = np.abs(got - ref), ref.std()
    return {"max_abs": round(float(diff.max()), 5), "max_of_spread": round(float(diff.max() / spread), 5),
            "rms_of_spread": round(float(np.sqrt((diff**2).mean()) / spread), 5),
            "argmax_same": float((got.argmax(-1) == ref.argmax(-1)).mean()),
            "corr": round(float(np.corrcoef(got.ravel(), ref.ravel())[0, 1]), 6)}  # fmt: skip


def test_reference_layouts_agree(weights, tokens):
    """The helper's HF weights with rotate-half RoPE compute what native weights compute."""
    hf = to_hf(weights)
    half = forward({name: hf[hf_name(name)] for name in weights}, tokens, rope="half")
    assert np.abs(half - forward(weights, tokens)).max() < 1e-9


@pytest.mark.parametrize("layout", ["hf", "native"])
def test_f32_logits_match_numpy(layout, converted, weights, tokens):
    got = llama_logits(converted(layout, "f32").path, tokens)
    stats = agreement(got, forward(weights, tokens))
    print(f"\n{layout} f32 vs NumPy: {stats}")
    assert stats["max_of_spread"] < 1e-2
    assert stats["argmax_same"] == 1.0


@pytest.mark.parametrize("outtype, max_rms, min_corr, min_argmax", [("q8_0", 0.03, 0.999, 0.9), ("q4_k_m", 0.2, 0.98, 0.6)])
def test_quantized_logits_stay_close(outtype, max_rms, min_corr, min_argmax, converted, weights, tokens):
    """Random weights have no structure for quantization to keep: these bounds are loose on purpose."""
    result = converted("hf", outtype)
    stats = agreement(llama_logits(result.path, tokens), forward(weights, tokens))
    print(f"\nhf {outtype} vs NumPy: {stats}, {result.size_bytes / 1e6:.1f} MB")
    assert stats["rms_of_spread"] < max_rms
    assert stats["corr"] > min_corr
    assert stats["argmax_same"] >= min_argmax
    assert result.size_bytes < converted("hf", "f32").size_bytes / 3


def test_metadata(converted):
    value, tensors = read_gguf(converted("native", "f32").path)
    cfg = Tiny()
    assert value["general.architecture"] == "llama"
    assert value["general.name"] == "native"
    assert value["llama.context_length"] == 131072
    assert value["llama.embedding_length"] == cfg.hidden
    assert value["llama.block_count"] == cfg.n_layers
    assert value["llama.feed_forward_length"] == cfg.ffn
    assert (value["llama.attention.head_count"], value["llama.attention.head_count_kv"]) == (4, 2)
    assert value["llama.attention.key_length"] == value["llama.attention.value_length"] == cfg.head_dim
    assert value["llama.rope.dimension_count"] == cfg.head_dim
    assert value["llama.rope.freq_base"] == 1e6
    assert value["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert value["llama.vocab_size"] == 131072
    assert value["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert value["general.quantization_version"] == 2
    assert value["tokenizer.ggml.pre"] == "tekken"
    assert len(value["tokenizer.ggml.tokens"]) == 131072
    assert {tensors[name][0] for name in ("blk.0.attn_norm.weight", "output_norm.weight")} == {gguf.GGMLQuantizationType.F32}


@pytest.mark.parametrize("lang", sorted(TEXTS))
def test_llama_cpp_tokenizes_like_tekken(lang, vocab_only):
    assert vocab_only.tokenize(TEXTS[lang].encode(), add_bos=False, special=False) == Tekken.from_json(tekken_json()).encode(TEXTS[lang])


@pytest.fixture(scope="module")
def mistral_tokenizer():
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.from_file(str(tekken_json()))


CHATS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "What is the capital of Italy?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?  "}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another one?"}],
]  # fmt: skip


@pytest.mark.parametrize("messages", CHATS, ids=["user", "system", "multi-turn"])
def test_embedded_chat_template_matches_mistral_common(messages, vocab_only, mistral_tokenizer):
    """Rendered as llama-cpp-python renders a GGUF's template, tokenized by llama.cpp."""
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(vocab_only.metadata["tokenizer.chat_template"])
    text = template.render(messages=messages, bos_token="<s>", eos_token="</s>")
    expected = mistral_tokenizer.encode_chat_completion(ChatCompletionRequest(messages=messages)).tokens
    assert vocab_only.tokenize(text.encode(), add_bos=False, special=True) == expected


def fp8_checkpoint(weights, cfg=Tiny()):
    """HF FP8 tensors (E4M3 + 128x128 weight_scale_inv, under HF names) and the weights they stand for."""
    stored, dequantized = {}, {}
    for name, w in to_hf(weights, cfg).items():
        if w.ndim == 2 and "embed" not in name and "lm_head" not in name:
            q, scale, w = fp8_block(w)
            stored |= {name: ("F8_E4M3", q), name.removesuffix("weight") + "weight_scale_inv": ("F32", scale),
                       name.removesuffix("weight") + "input_scale": ("F32", np.ones(1, np.float32))}  # fmt: skip
        else:
            stored[name] = ("BF16", bf16_bytes(w))
        dequantized[name] = w
    return stored, dequantized


def test_fp8_input_is_dequantized(tmp_path, weights, tokens):
    stored, dequantized = fp8_checkpoint(weights)
    config = hf_config(quantization_config={"quant_method": "fp8", "weight_block_size": [128, 128], "activation_scheme": "dynamic"})
    result = convert(write_hf(tmp_path / "fp8", weights, stored=stored, config=config), tmp_path / "fp8.gguf", "f32")
    _, tensors = read_gguf(result.path)
    for name, hf in [("blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"),
                     ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight")]:  # fmt: skip
        np.testing.assert_array_equal(gguf_f32_tensor(result.path, tensors, name), dequantized[hf])
    reference = forward({name: dequantized[hf_name(name)] for name in weights}, tokens, rope="half")
    stats = agreement(llama_logits(result.path, tokens), reference)
    assert stats["max_of_spread"] < 1e-2 and stats["argmax_same"] == 1.0


def test_native_fp8_per_tensor_scale(tmp_path, weights):
    w = weights["layers.0.feed_forward.w2.weight"]
    scale = np.float32(np.abs(w).max() / 448)
    q = to_e4m3(w / scale)
    stored = as_bf16(weights) | {"layers.0.feed_forward.w2.weight": ("F8_E4M3", q),
                                 "layers.0.feed_forward.w2.qscale_weight": ("F32", np.array([scale], np.float32))}  # fmt: skip
    tensor = next(t for t in Checkpoint.open(write_native(tmp_path, weights, stored=stored)).tensors() if t.name == "blk.0.ffn_down.weight")
    got = tensor.rows(0, tensor.shape[0])
    np.testing.assert_array_equal(got, np.vectorize(e4m3_value)(q).astype(np.float32) * scale)


def test_e4m3_decoding():
    """The converter's FP8 table against the format's definition, itself checked on known values."""
    assert [e4m3_value(b) for b in (0x38, 0x7E, 0x01, 0xB8, 0x08)] == [1.0, 448.0, 2.0**-9, -1.0, 2.0**-6]
    expected = np.array([e4m3_value(b) for b in range(256)], dtype=np.float32)
    np.testing.assert_array_equal(to_float32(np.arange(256, dtype=np.uint8), "F8_E4M3"), expected)


def test_tokenizer_json_gives_the_same_vocabulary(tmp_path, tiny, converted):
    folder = linked_copy(tiny["hf"], tmp_path / "hf", skip={"tekken.json"})
    tekken = Tekken.from_json(tekken_json())
    specials = [{"id": i, "content": s, "special": True} for i, s in enumerate(tekken.special_tokens)]
    vocab = {token: i for i, token in enumerate(tekken.gguf_tokens()) if i >= tekken.num_special}
    (folder / "tokenizer.json").write_text(json.dumps({
        "added_tokens": specials, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}]},
        "model": {"type": "BPE", "vocab": vocab, "merges": []}}))  # fmt: skip
    result = convert(folder, tmp_path / "out.gguf", "q8_0")
    (ours, _), (theirs, _) = read_gguf(result.path), read_gguf(converted("hf", "q8_0").path)
    for field in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
        assert ours[field] == theirs[field]


def test_progress_and_context_length(tiny, tmp_path):
    seen = []
    result = convert(tiny["native"], tmp_path / "q4.gguf", "q4_k_m", context_length=32768, progress=seen.append)
    assert seen[-1].done == seen[-1].total == 2 * result.n_params
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:]))
    assert any(p.what == "llama-quantize" for p in seen)
    metadata, _ = read_gguf(result.path)
    assert metadata["llama.context_length"] == 32768
    assert metadata["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q4_K_M


# --- bad input -----------------------------------------------------------------------------


def linked_copy(src, dst, skip=()):
    """`dst` with symlinks to each file of `src` except `skip`."""
    dst.mkdir()
    for path in src.iterdir():
        if path.name not in skip:
            os.symlink(path, dst / path.name)
    return dst


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("skip, message", [
    ({"config.json"}, "neither config.json"),
    ({"model-00002-of-00002.safetensors"}, "model-00002-of-00002.safetensors: file is missing"),
    ({"tekken.json"}, "tekken.json (or tokenizer.json) is missing"),
])  # fmt: skip
def test_missing_file(skip, message, tiny, tmp_path):
    folder = linked_copy(tiny["hf"], tmp_path / "src", skip)
    with pytest.raises(UserError, match="^" + re.escape(str(tmp_path)) + ".*" + re.escape(message)):
        convert(folder, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def with_config(tiny, tmp_path, **changes):
    folder = linked_copy(tiny["hf"], tmp_path / "src", skip={"config.json"})
    (folder / "config.json").write_text(json.dumps(hf_config() | changes))
    return folder


def test_mixtral_is_refused(tiny, tmp_path):
    folder = with_config(tiny, tmp_path, architectures=["MixtralForCausalLM"], num_local_experts=8)
    with pytest.raises(UserError, match=r"config\.json: MixtralForCausalLM is a Mixtral mixture-of-experts model"):
        convert(folder, tmp_path / "out.gguf")


def test_native_moe_is_refused(tiny, tmp_path):
    folder = linked_copy(tiny["native"], tmp_path / "src", skip={"params.json"})
    params = json.loads((tiny["native"] / "params.json").read_text()) | {"moe": {"num_experts": 8}}
    (folder / "params.json").write_text(json.dumps(params))
    with pytest.raises(UserError, match="mixture-of-experts"):
        convert(folder, tmp_path / "out.gguf")


def test_mismatched_shapes(tiny, tmp_path):
    folder = with_config(tiny, tmp_path, intermediate_size=1024)
    with pytest.raises(UserError, match=r"safetensors: model\.layers\.\d\.mlp\.\w+_proj\.weight has shape \[\d+, \d+\], the config implies"):
        convert(folder, tmp_path / "out.gguf")


def test_truncated_safetensors(tiny, tmp_path):
    name = "model-00002-of-00002.safetensors"
    folder = linked_copy(tiny["hf"], tmp_path / "src", skip={name})
    data = (tiny["hf"] / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=rf"src/{name}: truncated \({len(data) // 2} bytes, its header needs {len(data)}\)$"):
        convert(folder, tmp_path / "out.gguf")


def test_not_a_safetensors_file(tiny, tmp_path):
    folder = linked_copy(tiny["native"], tmp_path / "src", skip={"consolidated.safetensors"})
    (folder / "consolidated.safetensors").write_bytes((20).to_bytes(8, "little") + b"<html>not json</html>")
    with pytest.raises(UserError, match=r"src/consolidated\.safetensors: not a safetensors file \(unreadable header\)$"):
        convert(folder, tmp_path / "out.gguf")


def test_unexpected_tensor(tiny, tmp_path, weights):
    folder = linked_copy(tiny["native"], tmp_path / "src")
    write_safetensors(folder / "consolidated.bias.safetensors", {"layers.0.attention.wq.bias": ("F32", np.zeros(512, np.float32))})
    with pytest.raises(UserError, match=r"consolidated\.bias\.safetensors: unexpected tensor 'layers\.0\.attention\.wq\.bias'"):
        convert(folder, tmp_path / "out.gguf")


def test_bad_context_length(tiny, tmp_path):
    with pytest.raises(UserError, match="context length must be a positive number of tokens, not 0"):
        convert(tiny["hf"], tmp_path / "out.gguf", context_length=0)


def test_name_of_a_hugging_face_cache_snapshot(tmp_path):
    snapshot = tmp_path / "models--mistralai--Mistral-Nemo-Instruct-2407" / "snapshots" / "04d8a90549d2"
    snapshot.mkdir(parents=True)
    assert convert_gguf._model_name(snapshot) == "Mistral-Nemo-Instruct-2407"
    assert convert_gguf._model_name(tmp_path) == tmp_path.name


def test_unknown_outtype(tiny, tmp_path):
    with pytest.raises(UserError, match="unknown outtype 'q3_k'; choose one of f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m"):
        convert(tiny["hf"], tmp_path / "out.gguf", "q3_k")


def test_no_space_left_while_writing(tiny, tmp_path, monkeypatch):
    """The disk fills up half-way through the tensor data: one line, and no file left behind."""

    class FillingFile:
        def __init__(self, path, mode):
            self.f, self.room = open(path, mode), 50_000_000

        def write(self, data):
            self.room -= memoryview(data).nbytes
            if self.room < 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setattr(convert_gguf, "open", FillingFile, raising=False)
    with pytest.raises(UserError, match=rf"^{out_dir}/x\.gguf: no space left on device while writing \(needs about 0\.3 GB\)$"):
        convert(tiny["hf"], out_dir / "x.gguf", "f32")
    assert leftovers(out_dir) == []


def test_an_existing_file_is_never_replaced_unless_forced(tiny, tmp_path, home):
    out = tmp_path / "mine.gguf"
    out.write_bytes(b"a file of the user's")
    with pytest.raises(UserError, match=r"mine\.gguf: the file exists already, nothing was written"):
        convert(tiny["hf"], out, "f32")
    assert out.read_bytes() == b"a file of the user's" and set(leftovers(tmp_path)) - {"home"} == {"mine.gguf"}
    refused = run_cli("convert", str(tiny["hf"]), "-o", str(out), "--outtype", "f32", home=home)
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0 and "--force" in refused.stderr
    assert out.read_bytes() == b"a file of the user's"
    forced = run_cli("convert", str(tiny["hf"]), "-o", str(out), "--outtype", "f32", "--force", home=home)
    assert forced.returncode == 0, forced.stderr
    assert out.read_bytes()[:4] == b"GGUF" and set(leftovers(tmp_path)) - {"home"} == {"mine.gguf"}


def test_not_enough_space_is_caught_before_writing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(convert_gguf.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**12, 10**12 - 10**6, 10**6))
    with pytest.raises(UserError, match=r"out\.gguf: not enough free space in .* \(needs about 0\.1 GB, 0\.0 GB free\)"):
        convert(tiny["hf"], tmp_path / "out.gguf", "q8_0")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("outtype", ["f16", "q4_k_m"])
def test_cancel_leaves_nothing(outtype, tiny, tmp_path):
    def stopped_half_way(progress, cancel):
        def report(p):
            progress(p)
            if p.done * 2 >= p.total:  # for q4_k_m: when llama.cpp's quantizer starts
                cancel.cancel()
        return convert(tiny["hf"], tmp_path / "out.gguf", outtype, progress=report, cancel=cancel)

    job = Job(stopped_half_way)
    assert job.run().stopped and job.progress.done * 2 >= job.progress.total
    assert leftovers(tmp_path) == []
