#!/usr/bin/env bash
# Prints "BACKEND CMAKE_FLAGS..." for building llama.cpp on this machine.
# BACKEND: $NEMO_CHAT_BACKEND (auto|cpu|cuda); auto = cuda only when nvidia-smi lists a GPU AND
# nvcc exists. CPU kernels: never -march=native (its AMX kernels crash on some Xeons); exactly the
# instruction sets this CPU reports ($NEMO_CHAT_CPUINFO, default /proc/cpuinfo), AMX always off.
set -euo pipefail
BACKEND="${NEMO_CHAT_BACKEND:-auto}"

gpu_present() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; }
case "$BACKEND" in
  auto) if gpu_present && command -v nvcc >/dev/null 2>&1; then BACKEND=cuda; else BACKEND=cpu; fi ;;
  cpu|cuda) ;;
  *) echo "NEMO_CHAT_BACKEND must be auto, cpu or cuda (got '$BACKEND')" >&2; exit 2 ;;
esac

have=" $(grep -m1 -E '^(flags|Features)' "${NEMO_CHAT_CPUINFO:-/proc/cpuinfo}" 2>/dev/null | cut -d: -f2) "
flags="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
for pair in sse4_2:SSE42 avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI \
            avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  if [[ "$have" == *" ${pair%%:*} "* ]]; then flags+=" -DGGML_${pair##*:}=ON"; else flags+=" -DGGML_${pair##*:}=OFF"; fi
done
[ "$BACKEND" = cuda ] && flags+=" -DGGML_CUDA=ON"
[ -n "${NEMO_CHAT_CMAKE_ARGS:-}" ] && flags+=" $NEMO_CHAT_CMAKE_ARGS"
echo "$BACKEND $flags"
