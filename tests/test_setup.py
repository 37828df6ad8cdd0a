"""The llama.cpp build choice: CUDA only with a GPU and nvcc, CPU kernels from this CPU's flags."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "llama_build_flags.sh"


def build_choice(tmp_path, *, gpu: bool | None, nvcc: bool, cpu_flags: str = "fpu sse4_2 avx avx2 fma f16c",
                 backend: str | None = None) -> tuple[str, set[str]]:
    """Run the flag script with fake nvidia-smi/nvcc on PATH; None = no nvidia-smi at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("nvidia-smi", "nvcc"):
        (bin_dir / tool).unlink(missing_ok=True)
    if gpu is not None:
        answer = 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)"' if gpu else \
            'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."; exit 9'
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{answer}\n")
    if nvcc:
        (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0'\n")
    for tool in ("nvidia-smi", "nvcc"):
        if (bin_dir / tool).exists():
            (bin_dir / tool).chmod(0o755)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {cpu_flags}\n")
    for tool in ("grep", "cut"):  # what the script runs besides bash; no real nvidia-smi or nvcc is reachable
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "NEMO_CHAT_CPUINFO": str(cpuinfo)}
    if backend:
        env["NEMO_CHAT_BACKEND"] = backend
    out = subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, check=True).stdout.split()
    return out[0], set(out[1:])


def test_cuda_only_when_a_gpu_and_nvcc_are_both_present(tmp_path):
    assert build_choice(tmp_path, gpu=True, nvcc=True)[0] == "cuda"
    assert "-DGGML_CUDA=ON" in build_choice(tmp_path, gpu=True, nvcc=True)[1]
    assert build_choice(tmp_path, gpu=False, nvcc=True) == build_choice(tmp_path, gpu=None, nvcc=True)
    assert build_choice(tmp_path, gpu=None, nvcc=True)[0] == "cpu"  # this machine: nvcc, no GPU
    assert build_choice(tmp_path, gpu=True, nvcc=False)[0] == "cpu"


def test_the_backend_can_be_forced(tmp_path):
    assert build_choice(tmp_path, gpu=True, nvcc=True, backend="cpu")[0] == "cpu"
    assert build_choice(tmp_path, gpu=None, nvcc=True, backend="cuda")[0] == "cuda"
    result = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "NEMO_CHAT_BACKEND": "metal"},
                            capture_output=True, text=True)
    assert result.returncode == 2 and "auto, cpu or cuda" in result.stderr


def test_cpu_kernels_follow_the_cpu_and_never_use_native_or_amx(tmp_path):
    _, flags = build_choice(tmp_path, gpu=None, nvcc=False,
                            cpu_flags="sse4_2 avx avx2 fma f16c bmi2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16")
    assert {"-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON"} <= flags
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= flags
    _, old = build_choice(tmp_path, gpu=None, nvcc=False, cpu_flags="sse4_2 avx")
    assert {"-DGGML_AVX=ON", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_AVX512=OFF"} <= old
