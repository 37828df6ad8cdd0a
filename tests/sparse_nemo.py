"""GGUF files with Mistral NeMo 12B's exact tensor table and quant mix but no weights.

The header is real; the tensor data is a hole (the file is extended with truncate), so a 13 GB
"model" costs a few kilobytes of disk. The quant mixes follow llama.cpp's quantizer for NeMo's
40 layers: Q4_K_M and Q5_K_M keep attn_v and ffn_down in Q6_K on the layers where llama.cpp's
`use_more_bits` says so (the first and last eighth and every third one between) and the output
matrix in Q6_K. The sizes match the published files (GUIDE §4: 7.47, 8.72, 10.05, 13.01 GB).
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np

from app.base.gguf_info import read_gguf_header

Q = gguf.GGMLQuantizationType
N_LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 40, 5120, 32, 8, 128, 14336, 131072
BASE = {"Q4_K_M": Q.Q4_K, "Q5_K_M": Q.Q5_K, "Q6_K": Q.Q6_K, "Q8_0": Q.Q8_0}
FILE_TYPE = {"Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "Q8_0": 7}
PUBLISHED_GB = {"Q4_K_M": 7.47, "Q5_K_M": 8.72, "Q6_K": 10.05, "Q8_0": 13.01}


def more_bits(layer: int, n: int = N_LAYERS) -> bool:
    """llama.cpp's use_more_bits()."""
    return layer < n // 8 or layer >= 7 * n // 8 or (layer - n // 8) % 3 == 2


def tensor_table(quant: str) -> list[tuple[str, tuple[int, int] | tuple[int], Q]]:
    """(name, numpy-order shape, type) for every tensor of NeMo in this quant."""
    base = BASE[quant]
    mixed = quant in ("Q4_K_M", "Q5_K_M")
    out_type = Q.Q8_0 if base == Q.Q8_0 else Q.Q6_K
    table = [("token_embd.weight", (VOCAB, HIDDEN), base), ("output_norm.weight", (HIDDEN,), Q.F32),
             ("output.weight", (VOCAB, HIDDEN), out_type)]
    for i in range(N_LAYERS):
        bump = Q.Q6_K if mixed and more_bits(i) else base
        p = f"blk.{i}."
        table += [(p + "attn_norm.weight", (HIDDEN,), Q.F32), (p + "ffn_norm.weight", (HIDDEN,), Q.F32),
                  (p + "attn_q.weight", (HEADS * HEAD_DIM, HIDDEN), base),
                  (p + "attn_k.weight", (KV_HEADS * HEAD_DIM, HIDDEN), base),
                  (p + "attn_v.weight", (KV_HEADS * HEAD_DIM, HIDDEN), bump),
                  (p + "attn_output.weight", (HIDDEN, HEADS * HEAD_DIM), base),
                  (p + "ffn_gate.weight", (FFN, HIDDEN), base), (p + "ffn_up.weight", (FFN, HIDDEN), base),
                  (p + "ffn_down.weight", (HIDDEN, FFN), bump)]  # fmt: skip
    return table


def write_sparse_nemo(path: Path, quant: str = "Q4_K_M", template: str = "{{ '[INST]' }}") -> Path:
    """Write the header and tensor table, then extend the file to its full size without data."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"Mistral-Nemo-Instruct-2407 {quant} (no weights)")
    writer.add_context_length(1024000)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(1e6)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_file_type(FILE_TYPE[quant])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("tekken")
    if template:
        writer.add_chat_template(template)
    for name, shape, qtype in tensor_table(quant):
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        writer.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) // block * size, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    _, tensors = read_gguf_header(path)
    os.truncate(path, max(t.offset + t.n_bytes for t in tensors))
    return path
