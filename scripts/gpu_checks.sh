#!/usr/bin/env bash
# The GPU checks of the benchmark issue, as one script for a lent CUDA machine:
#   1. tests/test_cuda_fast_path.py: batched SMC steps never synchronise with the host;
#   2. the issue's benchmark: qwen2-1.5b dimensions (random weights), bfloat16, N = 32,
#      512 new tokens, static cache + CUDA graphs, records every 16 steps, with Hugging
#      Face generate (static cache) side by side.
# Results go to $OUT (default gpu-out/). PY picks the interpreter (default python3: the
# device machine has its own CUDA torch; the CPU .venv does not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
PY=${PY:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_fast_path.py 2>&1 | tee "$OUT/cuda-tests.txt"
"$PY" -m powersmc_core bench --random-init qwen2-1.5b --device cuda --dtype bfloat16 \
    --particles 32 --new-tokens 512 --repeats "${REPEATS:-3}" --compile --skip mh \
    --stream-every 16 --json "$OUT/bench-gpu.json" 2>&1 | tee "$OUT/bench-gpu.txt"
