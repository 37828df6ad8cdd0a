#!/usr/bin/env bash
# NeMo 12B on this machine's NVIDIA GPU: build llama-cpp-python with CUDA for this card only
# (scripts/setup.sh, NEMO_CHAT_BACKEND=cuda), then run bench/gpu/bench_gpu.py with the arguments
# given here. BENCH_SKIP_SETUP=1 uses the .venv as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi -L | grep -q '^GPU ' || { echo "bench/gpu: no NVIDIA GPU (nvidia-smi -L)" >&2; exit 2; }
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
if [ "${BENCH_SKIP_SETUP:-0}" != 1 ]; then
  started=$(date +%s)
  NEMO_CHAT_BACKEND=cuda NEMO_CHAT_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$ARCH ${NEMO_CHAT_CMAKE_ARGS:-}" scripts/setup.sh
  echo "bench/gpu: setup (CUDA build for sm_$ARCH) took $(( $(date +%s) - started )) s" >&2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
PYTHONUNBUFFERED=1 exec .venv/bin/python bench/gpu/bench_gpu.py "$@"
