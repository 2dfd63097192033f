#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA extension, run the CUDA tests and the op
# benchmark on the GPU. Meant to finish in well under 8 minutes; prints everything it does.
#
#     scripts/gpu_check.sh            # uses .venv (made by `make setup` if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
[ -x .venv/bin/python ] || make setup
PY=.venv/bin/python
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')}"

step "build (FORCE_CUDA=1, arch ${TORCH_CUDA_ARCH_LIST}; only the archs of this GPU, for speed)"
FORCE_CUDA=1 MAX_JOBS="$(nproc)" $PY -m pip install -q --no-build-isolation --no-deps -e .
$PY -m dreamkit doctor | grep -E "cuda|op_kernels|^  "

step "CUDA tests"
$PY -m pytest -q -p no:cacheprovider -m cuda tests/ops

step "op benchmark on the GPU"
$PY bench/ops.py --device cuda --threads "$(nproc)" --repeats 30

step "done"
