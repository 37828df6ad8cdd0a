"""`nemo-chat models info`: what a GGUF holds (`catalog.describe_gguf`), as lines of text in the
terminal's language."""

from __future__ import annotations

from app.faces.locale_text import terminal_text


def model_info_text(d: dict) -> str:
    """`describe_gguf`'s record as labelled lines: file, model, parameters, quantization, context,
    layers, attention, tokenizer, template."""
    gb = lambda n: f"{n / 1e9:.2f} GB"  # noqa: E731
    mix = ", ".join(terminal_text("model_info_mix", name=name, size=gb(e["bytes"]), tensors=e["tensors"])
                    for name, e in d["quant_mix"].items())
    tekken = terminal_text("model_info_tekken" if d["tekken"] else "model_info_not_tekken")
    rows = [
        ("model_info_file", f"{d['path']} ({gb(d['size_bytes'])})"),
        ("model_info_model", terminal_text("model_info_architecture", name=d["name"], architecture=d["architecture"])),
        ("model_info_parameters", f"{d['parameters'] / 1e9:.2f} B"),
        ("model_info_quantization", f"{d['file_type']}: {mix}"),
        ("model_info_context", terminal_text("model_info_context_tokens", tokens=f"{d['context_length']:,}")),
        ("model_info_layers", terminal_text("model_info_layers_line", layers=d["layers"], hidden=d["embedding_length"],
                                            ffn=d["feed_forward_length"])),
        ("model_info_attention", terminal_text("model_info_attention_line", heads=d["heads"], kv_heads=d["kv_heads"],
                                               head_dim=d["head_dim"],
                                               kib=f"{d['kv_cache_bytes_per_token_f16'] / 1024:g}")),
        ("model_info_tokenizer", f"{d['tokenizer']}/{d['tokenizer_pre']}, {d['vocab_size']} tokens · {tekken}"),
        ("model_info_template", template_text(d)),
    ]
    return "\n".join(f"{terminal_text(label):<13}{value}" for label, value in rows)


def template_text(d: dict) -> str:
    """The chat template's family ('chatml'), or what it is when it is none or only a name."""
    if d["chat_template"] == "none":
        return terminal_text("model_info_template_none")
    if d["chat_template"] == "name-only":
        return terminal_text("model_info_template_name_only", name=repr(d.get("chat_template_name", "")))
    return d["chat_template"]
