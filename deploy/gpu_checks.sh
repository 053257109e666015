#!/usr/bin/env bash
# The GPU checks of the benchmark issue, as one script for a lent CUDA machine:
#   1. tests/test_cuda_fast_path.py: batched SMC steps never synchronise with the host;
#   2. one static-cache reorder, pooled (2 kernels) vs per layer, qwen2-1.5b, N = 32;
#   3. the issue's benchmark: qwen2-1.5b dimensions (random weights), bfloat16, N = 32,
#      512 new tokens, static cache + CUDA graphs, records every 16 steps, with Hugging
#      Face generate (static cache) side by side, and two more SMC rows: resampling
#      considered every 16 steps (identity copies 1/16 as often), and records every step
#      (a host synchronisation per token instead of identity copies).
# Results go to $OUT (default gpu-out/). PY picks the interpreter (default python3: the
# device machine has its own CUDA torch; the CPU .venv does not travel, and the package is
# not installed there, hence PYTHONPATH). A smoke test of this script on a CPU:
#   DEVICE=cpu DTYPE=float32 ARCH=tiny NEW_TOKENS=8 REPEATS=1 PY=.venv/bin/python deploy/gpu_checks.sh
# Each step runs even when an earlier one failed (device time is scarce: one call must bring
# back everything); the exit status says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu-out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
ARCH=${ARCH:-qwen2-1.5b}
mkdir -p "$OUT"
failed=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } \
    | tee "$OUT/gpu.txt"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$OUT/gpu.txt" || failed=1
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_fast_path.py 2>&1 | tee "$OUT/cuda-tests.txt" \
    || failed=1
"$PY" docs/measurements/measure_static_reorder.py --model "random:$ARCH" --device "$DEVICE" \
    --dtype "$DTYPE" --particles "${PARTICLES:-32}" --length 300 --json "$OUT/reorder-gpu.json" \
    2>&1 | tee "$OUT/reorder-gpu.txt" || failed=1
"$PY" -m powersmc_core bench --random-init "$ARCH" --device "$DEVICE" --dtype "$DTYPE" \
    --particles "${PARTICLES:-32}" --new-tokens "${NEW_TOKENS:-512}" --repeats "${REPEATS:-3}" \
    --static-cache on --compile --skip mh --stream-every 16 --smc-variant 16:16 \
    --smc-variant 1:1 --json "$OUT/bench-gpu.json" 2>&1 \
    | tee "$OUT/bench-gpu.txt" || failed=1
exit "$failed"
