#!/usr/bin/env bash
# One prepared GPU check: training throughput of our JAX EfficientNet-B0 against timm on
# the same GPU, then the unchanged trainer end to end on synthskin-v1. Writes JSON under $OUT.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh            # on a CUDA machine with jax[cuda], torch, timm
#
# Packages the GPU image lacks can be carried as wheels in .whl/ (pure-python trees in .whl/py).
# Knobs (env): MODEL (efficientnet_b0), SIZE (224), BATCH (128), TRAIN_SIZE (128), EPOCHS (8), N_SYNTH
# (3000 = the synthskin-v1 preset; smaller = a custom set with the same seed), SKIP_TIMM=1,
# SKIP_THROUGHPUT=1.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
MODEL=${MODEL:-efficientnet_b0}; SIZE=${SIZE:-224}; BATCH=${BATCH:-128}
TRAIN_SIZE=${TRAIN_SIZE:-128}; EPOCHS=${EPOCHS:-8}; N_SYNTH=${N_SYNTH:-3000}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
source "$(dirname "$0")/device_env.sh" || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
  python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" 2>/dev/null || true
} | tee "$OUT/versions.txt"

t0=$(date +%s)
TORCH=--compare-torch; [ "${SKIP_TIMM:-0}" = 1 ] && TORCH=
for dt in $([ "${SKIP_THROUGHPUT:-0}" = 1 ] || echo bfloat16 float32); do
  for impl in conv fast; do
    [ "$impl" = fast ] && [ "$dt" = float32 ] && continue
    timeout 240 python3 benchmarks/train_throughput.py --model "$MODEL" --image-size "$SIZE" \
      --batch-size "$BATCH" --steps 10 --rounds 3 --warmup 3 --dtype $dt --conv-impl $impl \
      $([ "$impl" = conv ] && echo $TORCH) --json | tee -a "$OUT/throughput.jsonl"
  done
done
echo "throughput done in $(( $(date +%s) - t0 )) s"

t1=$(date +%s)
if [ "$N_SYNTH" = 3000 ]; then
  python3 -m data.synthetic --preset synthskin-v1 --out /tmp/synth --workers "$(nproc)" --json > "$OUT/synth.json" || exit 1
else
  python3 -m data.synthetic --out /tmp/synth --n "$N_SYNTH" --seed 20251125 --workers "$(nproc)" --json > "$OUT/synth.json" || exit 1
fi
t2=$(date +%s)
python3 train_jax/main.py --data /tmp/synth --model "$MODEL" --image-size "$TRAIN_SIZE" \
  --batch-size "$BATCH" --epochs "$EPOCHS" --dtype bfloat16 --no-mlflow --no-progress \
  --out /tmp/runs --run gpu --json > "$OUT/train_metrics.json"
rc=$?
t3=$(date +%s)
echo "{\"synth_s\": $((t2 - t1)), \"train_s\": $((t3 - t2)), \"train_rc\": $rc}" | tee "$OUT/timing.json"
cp /tmp/runs/gpu/config.json "$OUT/train_config.json" 2>/dev/null || true
exit $rc
