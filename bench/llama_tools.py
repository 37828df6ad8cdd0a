"""llama.cpp's own `llama-batched-bench` and `llama-server`, built once from the llama.cpp tree
vendored in the llama-cpp-python sdist we pin, with the CMake flags our installed build records in
`.venv/.llama-build` (so both sides run the same kernels). Kept in
`~/.cache/nemo-chat/llama-tools/<hash of the flags>/`, beside the wheel cache.

    .venv/bin/python bench/llama_tools.py      # build (or find) them and print their folder
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("llama-batched-bench", "llama-server")
TOOL_FLAGS = ["-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_CURL=OFF",
              "-DBUILD_SHARED_LIBS=OFF", "-DCMAKE_BUILD_TYPE=Release"]


def build_stamp() -> str:
    """'llama-cpp-python==VERSION FLAGS...' of the installed build (setup.sh's record)."""
    recorded = ROOT / ".venv" / ".llama-build"
    if recorded.exists():
        return recorded.read_text().strip()
    flags = subprocess.run([str(ROOT / "scripts" / "llama_build_flags.sh")], capture_output=True, text=True,
                           check=True).stdout.split(maxsplit=1)[1].strip()
    return f"llama-cpp-python==0.3.36 {flags}"


def tools_dir(stamp: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nemo-chat" / "llama-tools"
    digest = hashlib.sha256((stamp + " " + " ".join(TOOL_FLAGS)).encode()).hexdigest()[:16]
    return cache / digest


def ensure_tools(log=print) -> Path:
    """The folder holding both tools, building them first when missing (minutes)."""
    stamp = build_stamp()
    folder = tools_dir(stamp)
    if all((folder / name).exists() for name in TARGETS):
        return folder
    package, flags = stamp.split(maxsplit=1)
    log(f"building {', '.join(TARGETS)} from {package}'s vendored llama.cpp: {flags}")
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
                        "--no-binary", ":all:", package, "-d", work], check=True)
        archive = next(Path(work).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        source = next(Path(work).glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = Path(work) / "build"
        subprocess.run(["cmake", "-S", str(source), "-B", str(build), *flags.split(), *TOOL_FLAGS],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), "--target", *TARGETS, "-j", str(os.cpu_count() or 1)],
                       check=True, stdout=subprocess.DEVNULL)
        staging = folder.with_suffix(".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in TARGETS:
            shutil.copy2(build / "bin" / name, staging / name)
        (staging / "STAMP").write_text(stamp + "\n" + " ".join(TOOL_FLAGS) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder


if __name__ == "__main__":
    print(ensure_tools(log=lambda line: print(line, file=sys.stderr)))
