#!/usr/bin/env bash
# Train several configs x seeds side by side on one GPU (or any machine), for ablations that are
# too slow on a 2-core CPU. The runs come back as tarball parts under $OUT; evaluate them where
# the held-out draws live (`python -m explain.evaluate --run RUN ...`, docs/explainability.md).
#
#   OUT=/tmp/sweep CFG=benchmarks/sweep_configs \
#     JOBS="synthetic_wide_96px:0 synthetic_wide_128px:0" bash benchmarks/gpu_sweep.sh
#
# CFG holds one trainer config per name (<name>.json, a run's config.json format); JOBS lists
# name:seed pairs, started together; LATER lists pairs started after JOBS only if JOBS finished
# within LATER_IF_S seconds. Knobs (env): EPOCHS (config's), TRAIN_TIMEOUT (400 s), SIZES (crop
# sizes to build, "96 128"), DATA (data/synthskin-v1, generated from the preset if missing),
# TFDS_DIR (/tmp/sweep_tfds), RUNS (/tmp/sweep_runs), DEADLINE_S (seconds from the start by which
# the LATER runs must end). Packages the GPU image lacks travel as wheels in .whl/ (pure-python
# trees in .whl/py; NO_WHEELS=1 ignores them). Output under $OUT: versions.txt, synth.json,
# summary.json (every run's metrics.json), runs_<phase>.tgz.* (cat the parts | tar xzf -).
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;; esac
OUT=${OUT:-/tmp/gpu_sweep}; CFG=${CFG:-benchmarks/sweep_configs}; JOBS=${JOBS:-"synthetic_wide_96px:0"}
LATER=${LATER:-}; LATER_IF_S=${LATER_IF_S:-200}; TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-400}
SIZES=${SIZES:-"96 128"}; DATA=${DATA:-data/synthskin-v1}; TFDS_DIR=${TFDS_DIR:-/tmp/sweep_tfds}
RUNS=${RUNS:-/tmp/sweep_runs}; EPOCHS=${EPOCHS:-}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
t0=$(date +%s)
source "$(dirname "$0")/device_env.sh" || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  python3 -c "import jax, flax, optax, grain; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
  nproc
} 2>&1 | tee "$OUT/versions.txt"

if [ ! -f "$DATA/metadata.csv" ]; then
  python3 -m data.synthetic --preset synthskin-v1 --out "$DATA" --workers "$(nproc)" --json \
    > "$OUT/synth.json" || exit 1
fi
for s in $SIZES; do
  python3 -m data.tfds_builder --data "$DATA" --out "$TFDS_DIR" --image-size "$s" --json \
    > "$RUNS/tfds$s.json" 2> "$RUNS/tfds$s.log" &
done
wait
echo "data ready after $(( $(date +%s) - t0 )) s"

start() {  # name:seed
  local name=${1%%:*} seed=${1##*:} run="${1%%:*}-s${1##*:}"
  timeout "$TRAIN_TIMEOUT" python3 train_jax/main.py --config "$CFG/$name.json" --seed "$seed" \
    --data "$DATA" --set "data.tfds_dir=$TFDS_DIR" ${EPOCHS:+--epochs $EPOCHS} --no-mlflow \
    --no-progress --out "$RUNS" --run "$run" --json > "$RUNS/$run.metrics.json" 2> "$RUNS/$run.log"
  echo "$run rc=$? after $(( $(date +%s) - t0 )) s"
}
pack() {  # $1: tag; summary of every finished run plus the runs started in this phase
  python3 - "$RUNS" > "$OUT/summary.json" <<'PY'
import json, pathlib, sys
out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.metrics.json")):
    try:
        out[p.name.removesuffix(".metrics.json")] = json.loads(p.read_text())
    except ValueError:
        out[p.name.removesuffix(".metrics.json")] = None
print(json.dumps(out, indent=1))
PY
  local dirs=(); for j in "${@:2}"; do dirs+=("${j%%:*}-s${j##*:}"); done
  (cd "$RUNS" && tar czf - --exclude=latest -- "${dirs[@]}" $(printf '%s.log ' "${dirs[@]}") \
    2>/dev/null | split -b 15M - "$OUT/runs_$1.tgz.")
}
t1=$(date +%s)
for j in $JOBS; do start "$j" & done
wait
echo "first jobs done in $(( $(date +%s) - t1 )) s"
pack first $JOBS
if [ -n "$LATER" ] && [ $(( $(date +%s) - t1 )) -le "$LATER_IF_S" ]; then
  # the later jobs get what is left of DEADLINE_S (from the start of this script)
  TRAIN_TIMEOUT=$(( ${DEADLINE_S:-100000} - ($(date +%s) - t0) - 25 ))
  echo "later jobs, timeout $TRAIN_TIMEOUT s"
  for j in $LATER; do start "$j" & done
  wait
  pack later $LATER
fi
echo "total $(( $(date +%s) - t0 )) s"
