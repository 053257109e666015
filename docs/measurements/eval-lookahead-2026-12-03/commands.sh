set -x
cd /work/main
P=".venv/bin/python -m powersmc_core eval --task arithmetic --n 10 --max-new-tokens 64 --alpha 4 --out /tmp/ev/matched.csv --no-plots --no-progress"
$P --methods smc --n-particles 32
$P --methods lookahead --n-particles 8 --rollout-k 4 --rollout-m 2 --rollout-h 2 --block-size 4
$P --methods rollout --n-particles 2 --rollout-k 4 --rollout-m 2 --rollout-h 2
