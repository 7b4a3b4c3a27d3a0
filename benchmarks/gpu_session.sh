#!/usr/bin/env bash
# The GPU checks of the kernels issue in one go, for a session that is lent a CUDA machine
# (the device image has torch, triton, einops, pytest and hypothesis; nothing is installed):
#   bash benchmarks/gpu_session.sh [OUT_DIR]      (default: $OUT, else benchmarks/results)
# Writes gpu-info.txt, gpu-tests.log and cuda-antialias-kernels.{md,json} (the goals: see the
# docstrings of benchmarks/bench_kernels.py and the kernels issue). Exits non-zero if a test fails.
set -uo pipefail
out=${1:-${OUT:-benchmarks/results}}
# On a machine without CUDA (or without triton, pytest) nothing below can run: say so in one line
# before anything is written (the kernel tests and the CPU benchmarks need no GPU: make test).
if ! python3 -c "import torch, triton, pytest; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "benchmarks/gpu_session.sh: needs a CUDA machine whose python3 has torch (CUDA), triton" \
    "and pytest; here torch.cuda.is_available() is False or one is missing" >&2
  exit 2
fi
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu-info.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  | tee -a "$out/gpu-info.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_kernels_polyphase.py \
  tests/test_kernels_cpu.py tests/test_blur.py tests/test_polyphase.py 2>&1 | tee "$out/gpu-tests.log"
rc=${PIPESTATUS[0]}
python3 -m benchmarks --device cuda --family antialias --family kernels --out "$out" --no-progress
exit $((rc || $?))
