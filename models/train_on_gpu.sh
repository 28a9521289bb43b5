#!/usr/bin/env bash
# Train four width-64 teachers on one CUDA GPU, then distil their ensemble into students within the 1 ms budget
# (width 32, and 32-80-160-320),
# all with `python -m models.train` on Keras's JAX backend (PyTorch if JAX fails), inside a fixed time budget.
#
# Here (with ../shared):  python -m models.data ../shared/datasets/fer2013 .fer/fer2013_train.npz.xz --splits train
# There (repository root): bash models/train_on_gpu.sh .fer/fer2013_train.npz.xz RESULTS_DIR [SECONDS]
#   (see README "Training on a GPU" for carrying Keras there as wheels)
#
# A 2-epoch probe of the four teachers in parallel measures the epoch time; the teachers' and the
# students' epoch counts are then chosen to fill the budget (default 480 s; the chosen counts are in
# each run's config.json). Every choice among the results is made on the validation split of train/.
# The teachers are their last epochs with batch-norm statistics recomputed (models.recalibrate).
# RESULTS_DIR receives the students' best.keras and recalibrated last epochs, and results.tar.gz with every run's log, settings
# and history, and the teachers' ensemble probabilities for the training and validation faces.
# If the probe shows that the teachers would get fewer than MIN_TEACHER_EPOCHS (20) epochs, it stops there.
set -uo pipefail
data=$1 results=$2 budget=${3:-480}
runs=${RUNS:-/tmp/gpu_runs}
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
# four processes share the GPU: JAX would otherwise take 75% of its memory in the first one
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$runs" "$results"
start=$SECONDS
common=(--data "$data" --batch-size 128 --learning-rate 2e-3 --precision mixed_bfloat16)
teacher_seeds=(1 2 3 4)

epoch_seconds() {  # the slowest time printed in the given logs for the epoch given first
  local epoch=$1; shift
  grep -h "^epoch *$epoch " "$@" | grep -oE "  [0-9]+\.[0-9]s" | tr -d ' s' | sort -g | tail -1
}

probe_teachers() {
  for seed in "${teacher_seeds[@]}"; do
    python3 -m models.train "${common[@]}" --output-dir "$runs/probe_$seed" --width 64 --epochs 2 \
      --max-train-samples 6400 --seed "$seed" >"$runs/probe_$seed.log" 2>&1 &
  done
  wait
  epoch_seconds 2 "$runs"/probe_*.log  # the second epoch: after the backend's compilation and warm-up
}
probe=$(probe_teachers)
if [ -z "$probe" ] && [ "$KERAS_BACKEND" = jax ]; then  # fall back to Keras's PyTorch backend
  tail -n 5 "$runs"/probe_1.log; rm -rf "$runs"/probe_*; export KERAS_BACKEND=torch; probe=$(probe_teachers)
fi
[ -n "$probe" ] || { tail -n 20 "$runs"/probe_1.log; exit 1; }
grep -h "parameters\|Keras on" "$runs"/probe_1.log
# the probe saw a quarter of the faces; a full epoch takes at most four times as long
teacher_epoch=$(python3 -c "print(4 * $probe)")
left=$((budget - (SECONDS - start)))
teacher_epochs=$(python3 -c "print(max(1, int(0.42 * $left / $teacher_epoch)))")
echo "probe epoch ${probe}s; teachers: $teacher_epochs epochs of about ${teacher_epoch}s"
if [ "$teacher_epochs" -lt "${MIN_TEACHER_EPOCHS:-20}" ]; then
  echo "too slow for this budget: stopping before the teachers"; exit 1
fi

for seed in "${teacher_seeds[@]}"; do
  python3 -m models.train "${common[@]}" --output-dir "$runs/teacher_w64_s$seed" --width 64 \
    --epochs "$teacher_epochs" --mixup 0.2 --seed "$seed" >"$runs/teacher_w64_s$seed.log" 2>&1 &
done
wait
tail -n 2 "$runs"/teacher_w64_s*.log
# batch-norm statistics of the last epoch measured anew on clean faces (here: +2.4 points for a width-48 teacher)
recalibrate() {  # run_name
  python3 -m models.recalibrate --data "$data" --model "$runs/$1/final.keras" \
    --output "$runs/$1/final_recalibrated.keras" >"$runs/recalibrate_$1.log" 2>&1
  tail -n 3 "$runs/recalibrate_$1.log"
}
for seed in "${teacher_seeds[@]}"; do recalibrate "teacher_w64_s$seed"; done
teachers=("$runs"/teacher_w64_s*/final_recalibrated.keras)

# the ensemble's probabilities on training and validation faces, and its validation accuracy
python3 - "$data" "$runs/ensemble_probabilities.npz" "${teachers[@]}" <<'EOF'
import sys
import numpy as np
from models.data import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, load_fer2013, stratified_split
from models.predictor import ensemble_probabilities, load_predictor, predict_with_flip
train, val = stratified_split(load_fer2013(sys.argv[1])["train"], DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)
teachers = [load_predictor(path) for path in sys.argv[3:]]
val_each = [predict_with_flip(teacher, val.images) for teacher in teachers]
for path, probabilities in zip(sys.argv[3:], val_each):
    print(f"{path}: validation {(probabilities.argmax(1) == val.labels).mean():.4f} (flip-averaged)")
val_mean = np.mean(val_each, axis=0)
print(f"ensemble of {len(teachers)}: validation {(val_mean.argmax(1) == val.labels).mean():.4f} (flip-averaged)")
train_mean = ensemble_probabilities(teachers, train.images)
np.savez(sys.argv[2], train=train_mean, validation=val_mean)
EOF

left=$((budget - (SECONDS - start)))
teacher_epoch_measured=$(epoch_seconds 2 "$runs"/teacher_w64_s*.log)  # a student's epoch costs at most this
student_epochs=$(python3 -c "print(max(5, int(($left - 40) / ${teacher_epoch_measured:-$teacher_epoch})))")
echo "students: $student_epochs epochs"
student() {  # name "block widths" teacher_weight mixup seed
  # shellcheck disable=SC2086  # the widths are one word per block
  python3 -m models.train "${common[@]}" --output-dir "$runs/$1" --width $2 --epochs "$student_epochs" \
    --teacher "${teachers[@]}" --teacher-weight "$3" --mixup "$4" --seed "$5" >"$runs/$1.log" 2>&1 &
}
student student_w32_tw07_mix02 32 0.7 0.2 11
student student_w32_tw09_mix00 32 0.9 0.0 12
student student_w32_tw05_mix02 32 0.5 0.2 13
student student_w32-80-160-320_tw07_mix02 "32 80 160 320" 0.7 0.2 14  # 0.86 ms per face INT8, as w36
wait
tail -n 2 "$runs"/student_*.log

for run in "$runs"/student_*/; do
  name=$(basename "$run")
  recalibrate "$name"
  cp "$run/best.keras" "$results/$name.keras"
  cp "$run/final_recalibrated.keras" "$results/${name}_final_recalibrated.keras"
done
(cd "$runs" && tar czf "$results/results.tar.gz" ./*.log ./*/config.json ./*/history.csv ./*/state.json \
  ensemble_probabilities.npz)
echo "done in $((SECONDS - start))s"
