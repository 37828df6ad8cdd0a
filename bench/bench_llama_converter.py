"""llama.cpp's own converter on a native NeMo checkpoint, next to ours (docs/converter.md).

    .venv/bin/python bench/bench_llama_converter.py --converter PATH/convert_hf_to_gguf.py [--python PY]

llama.cpp's `convert_hf_to_gguf.py` ships in llama-cpp-python's sdist (`vendor/llama.cpp`) and
needs torch and transformers, which the app and its tests do not: give it a Python that has them
(`--python`). It converts the tiny native checkpoint (tests/tiny_nemo.py) with `--mistral-format`
and reports what docs/converter.md states: its output has no `llama.context_length`, names its
template `mistral-v3-tekken` and does not load, while ours of the same folder loads. Exits 1 when
a statement no longer holds. Temporary files are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tiny_nemo import make_weights, read_gguf, write_native  # noqa: E402


def loads(path: Path) -> bool:
    from llama_cpp import Llama

    try:
        Llama(str(path), n_ctx=64, verbose=False).close()
        return True
    except ValueError:
        return False


def run(converter: str, python: str) -> dict:
    from app.convert_gguf import convert

    with tempfile.TemporaryDirectory(prefix="bench-llama-converter-") as work:
        native = write_native(Path(work) / "native", make_weights())
        theirs = Path(work) / "llama-cpp.gguf"
        subprocess.run([python, converter, str(native), "--mistral-format", "--outtype", "f32",
                        "--outfile", str(theirs)], check=True, capture_output=True)
        ours = convert(native, Path(work) / "ours.gguf", "f32").path
        their_meta, _ = read_gguf(theirs)
        our_meta, _ = read_gguf(ours)
        return {
            "theirs": {"has_context_length": "llama.context_length" in their_meta,
                       "chat_template": their_meta.get("tokenizer.chat_template"), "loads": loads(theirs)},
            "ours": {"context_length": our_meta.get("llama.context_length"),
                     "template_has_inst": "[INST]" in our_meta.get("tokenizer.chat_template", ""), "loads": loads(ours)},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--converter", required=True, help="vendor/llama.cpp/convert_hf_to_gguf.py of the sdist")
    parser.add_argument("--python", default=sys.executable, help="a Python with torch and transformers")
    report = run(**vars(parser.parse_args()))
    print(json.dumps(report, indent=1))
    expected = (not report["theirs"]["has_context_length"] and report["theirs"]["chat_template"] == "mistral-v3-tekken"
                and not report["theirs"]["loads"] and report["ours"]["context_length"] == 131072
                and report["ours"]["template_has_inst"] and report["ours"]["loads"])
    sys.exit(0 if expected else 1)


if __name__ == "__main__":
    main()
