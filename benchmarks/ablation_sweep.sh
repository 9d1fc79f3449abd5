#!/usr/bin/env bash
# Parallel CPU sweep of fairness-ablation candidates on a many-core machine: each training
# is pinned to CORES cores; every finished run (config, metrics, predictions; no checkpoints) is
# added to $OUT/runs.tgz at once, so a time-out keeps what finished. Evaluate afterwards with
# fairness.thresholds + fairness.evaluate (`fairness_ablation.evaluate_variant` on each run folder).
#
#   OUT=/tmp/sweep SEEDS="0 1" CORES=2 bash benchmarks/ablation_sweep.sh
#
# Same base config as the ablation (train_jax/configs/demo.py:os16,imagenet,noloc at 96 px, 12 epochs).
# Numbers on synthskin-v1 are synthetic. Packages a bare machine lacks can be carried in .whl/.
set -uo pipefail
OUT=${OUT:-/tmp/sweep}; SEEDS=${SEEDS:-"0 1"}; CORES=${CORES:-2}
BASE=train_jax/configs/demo.py:os16,imagenet,noloc
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=cpu
source "$(dirname "$0")/device_env.sh" || exit 1
PY=${PY:-python3}
DATA=/tmp/sweep-data/synthskin-v1
t0=$(date +%s)
$PY -m data.synthetic --preset synthskin-v1 --out "$DATA" --workers "$(nproc)" --json >/dev/null || exit 1
# Build the crop caches once, before the parallel trainings read them (as the trainer would).
for size in ${SIZES:-96}; do
  $PY -m data.tfds_builder --data "$DATA" --out "$DATA/../tfds" --image-size "$size" --json \
    > "$OUT/build-$size.json" || exit 1
done
echo "data + cache in $(( $(date +%s) - t0 )) s"

# run name | config variant | flags (names follow benchmarks/fairness_ablation.py's variants)
JOBS=${JOBS:-"
baseline_bce|imagenet|--balance none --loss bce
balanced_groupdro_tone_norm|tone|--balance group --loss groupdro
balanced_groupdro_tone_norm_select_worst_group|tone|--balance group --loss groupdro --select worst_group_f1
balanced_groupdro_tone_norm_ema0.99|tone|--balance group --loss groupdro --ema 0.99
balanced_groupdro_tone_norm_eta0.1|tone|--balance group --loss groupdro --set groupdro_eta=0.1
balanced_group_label_groupdro_tone_norm|tone|--balance group_label --loss groupdro
balanced_groupdro_tone_norm_os4_select_worst_group|tone,os4|--balance group --loss groupdro --select worst_group_f1
bce_tone_norm_os4|tone,os4|--balance none --loss bce
"}
ncpu=$(nproc); slots=$(( ncpu / CORES )); [ "$slots" -lt 1 ] && slots=1
i=0
while IFS='|' read -r name variant flags; do
  [ -z "$name" ] && continue
  for seed in $SEEDS; do
    slot=$(( i % slots )); first=$(( slot * CORES )); last=$(( first + CORES - 1 ))
    run="$name-s$seed"
    ( start=$(date +%s)
      taskset -c "$first-$last" $PY train_jax/main.py --config "$BASE,$variant" --data "$DATA" \
        --set data.tfds_dir="$DATA/../tfds" --seed "$seed" --out /tmp/sweep-runs --run "$run" \
        --no-mlflow --no-progress $flags > "/tmp/sweep-runs-$run.log" 2>&1
      rc=$?
      tail -5 "/tmp/sweep-runs-$run.log" > "/tmp/sweep-runs/$run/log.txt" 2>/dev/null
      echo "$run rc=$rc $(( $(date +%s) - start )) s" | tee -a "$OUT/done.txt"
      # One archive of every finished run, replaced atomically (few files travel back).
      flock /tmp/sweep.lock sh -c "tar czf $OUT/.runs.tgz --exclude='*/checkpoints' -C /tmp sweep-runs \
        && mv $OUT/.runs.tgz $OUT/runs.tgz" ) &
    i=$(( i + 1 ))
    if [ $(( i % slots )) -eq 0 ]; then wait; fi
  done
done <<< "$JOBS"
wait
echo "sweep done in $(( $(date +%s) - t0 )) s"
