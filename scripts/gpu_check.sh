#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA extension, run the CUDA op tests, every built-in
# effect end to end on the GPU against its CPU result (tests/plugins/test_cuda_effects.py), and
# the op benchmark on the GPU. Meant to finish in well under 8 minutes; prints everything it does.
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

step "weights (offline sets, verified)"
# A lent GPU machine reaches no network: carry the weights in the tree (copy ~/.cache/dreamkit/weights
# to .dreamkit-home/weights, an ignored path, and name it in the device tool's carry list).
if [ -d .dreamkit-home ]; then export DREAMKIT_HOME="$PWD/.dreamkit-home"; fi
.venv/bin/dreamkit weights fetch offline

step "CUDA op tests"
$PY -m pytest -q -p no:cacheprovider -m cuda tests/ops

step "effects on CUDA vs CPU (deepdream tiled/untiled, classify, detect faces, COCO detector)"
$PY -m pytest -q -p no:cacheprovider -m cuda tests/plugins/test_cuda_effects.py

step "op benchmark on the GPU"
$PY bench/ops.py --device cuda --threads "$(nproc)" --repeats 30

step "done"
