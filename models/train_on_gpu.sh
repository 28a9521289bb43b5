#!/usr/bin/env bash
# Train teachers (width 64 by default) on one CUDA GPU, cache their ensemble's probabilities, then distil the
# ensemble into students within the 1 ms budget (width 32, and 32-80-160-320), all with `python -m models.train` on
# Keras's JAX backend (PyTorch if JAX fails), inside a fixed time budget.
#
# Here (with ../shared):  python -m models.data ../shared/datasets/fer2013 .fer/fer2013_train.npz.xz --splits train
# There (repository root): bash models/train_on_gpu.sh .fer/fer2013_train.npz.xz RESULTS_DIR [SECONDS]
#   (see README "Training on a GPU" for carrying Keras there as wheels)
#
# A 2-epoch probe of the teachers in parallel measures the epoch time (its second epoch); the teachers' and the
# students' epoch counts are then chosen to fill the budget (default 480 s; the counts are in each run's config.json).
# Every choice among the results is made on the validation split of train/.
# The teachers are their last epochs with batch-norm statistics recomputed (models.recalibrate).
# RESULTS_DIR receives, as soon as each is ready: teachers_probabilities.npz (`python -m models.ensemble`:
# the teachers' mean probabilities on the training and validation faces, to distil from anywhere with
# `python -m models.train --teacher teachers_probabilities.npz`), the students' best.keras, and
# results.tar.gz with every run's log, settings and history: six files (one more with STUDENTS_FROM_SHIPPED, one
# more with COMBINE_WITH), none over 16 MB (the device returns 8).
# If the probe shows that the teachers would get fewer than MIN_TEACHER_EPOCHS (20) epochs, it stops there.
# With TEACHER_PROBABILITIES=FILE.npz (e.g. models/training/teachers_w64x6_w48_probabilities.npz) it trains no
# teachers and gives the whole budget to the students, STUDENT_EPOCHS (default 120) epochs each.
# With TEACHER_EPOCHS=N the teachers get N epochs without a probe (and without its fallback to PyTorch).
# After the call's teachers the students get as many epochs as a teacher's epoch time fits in what is left, or
# STUDENT_EPOCHS.
# With COMBINE_WITH=FILE.npz the teachers' file and FILE are also combined as equal members (teachers_combined.npz
# comes back too), and the students distil from the best of the three on validation; if the probe finds the
# teachers too slow for the budget, the students distil from FILE alone, STUDENT_EPOCHS (default 60) epochs.
# With STUDENTS_FROM_SHIPPED=1 all four students start from models/emotion_cnn.keras (at 5e-4, 1e-3 with and
# without mixup, 2e-3), and their soup comes back too; with STUDENT_WIDTHS="32 80 160 320" (say) they start from
# the shipped weights widened to those block widths (models.resize: the same function at the start, more filters
# to learn with).
# The teachers of even seeds train with random erasing (--random-erasing TEACHER_ERASING, default 0.5; 0 turns
# it off), the odd ones without: their validation accuracies (ensemble.log) compare the two.
# TEACHER_FIRST_SEED (default 1) numbers the teachers' seeds from there.
# With LIVE_TEACHERS=1 (after this call's teachers, or with TEACHER_PROBABILITIES=RUNS/teachers_probabilities.npz
# after a TEACHERS_ONLY call's with the same RUNS on the same machine: RUNS=runs/gpu, inside the repository, which
# the device keeps between calls while it stays warm) the four students start from the shipped weights and test live
# distillation (models.train --live-teacher: the teachers run inside each training step, on the augmented faces
# the student sees): cycle 21's recipe (1e-3, mixup 0.2, seed 32) from the teachers' file as the control, the same
# live, live with mixup 1.0, and live at 2e-3; their soup comes back too. An earlier call's teachers whose ensemble
# scored under MIN_TEACHER_ACCURACY (0.6) on validation (RUNS/ensemble.log) are refused: they did not finish.
# TEACHER_ARCHITECTURE (vgg, the default, or residual: models.train --architecture) and TEACHER_WIDTH (default 64)
# choose the teachers' network; residual teachers err differently from the VGG-style ones, so combined with
# them (COMBINE_WITH) they make a stronger ensemble than more of the same kind.
# With TEACHERS_ONLY=1 it trains no students and gives the teachers all but ENSEMBLE_SECONDS (default 130: their
# recalibration and the ensemble's probabilities) of the budget; a second call distils the file it returns.
# Every run has a time limit (models.train --time-limit) that keeps the call within its budget even when epochs
# take longer than expected: teachers end in time for their ensemble, students STUDENT_RESERVE (default 60) seconds
# before the budget ends, for their soup and the results. Runs cut short say so in their logs ("stopped after").
set -uo pipefail
data=$1 results=$2 budget=${3:-480}
runs=${RUNS:-/tmp/gpu_runs}
teacher_count=${TEACHERS:-6}
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
# parallel processes share the GPU: JAX would otherwise take 75% of its memory in the first one
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# the teachers reuse the probe's compiled training step
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
start=$SECONDS
common=(--data "$data" --batch-size 128 --learning-rate 2e-3 --precision mixed_bfloat16)
first_seed=${TEACHER_FIRST_SEED:-1}  # another call's teachers: a later first seed, so they differ from earlier ones
teacher_seeds=($(seq "$first_seed" $((first_seed + teacher_count - 1))))
teacher_architecture=${TEACHER_ARCHITECTURE:-vgg} teacher_width=${TEACHER_WIDTH:-64}
teacher_net=(--architecture "$teacher_architecture" --width "$teacher_width")
teacher=teacher_w$teacher_width  # the runs' names: teacher_w64_s1, teacher_residual_w48_s1
[ "$teacher_architecture" = vgg ] || teacher=teacher_${teacher_architecture}_w$teacher_width
if [ -n "${LIVE_TEACHERS:-}" ]; then  # this call's teachers, or with TEACHER_PROBABILITIES an earlier call's in RUNS
  if [ -n "${COMBINE_WITH:-}${TEACHERS_ONLY:-}" ]; then
    echo "LIVE_TEACHERS distils from one set of teachers, the control from their file: leave out COMBINE_WITH" \
      "and TEACHERS_ONLY" >&2
    exit 2
  fi
  if [ -n "${TEACHER_PROBABILITIES:-}" ] && ! compgen -G "$runs/${teacher}_s*/final_recalibrated.keras" >/dev/null; then
    echo "LIVE_TEACHERS with TEACHER_PROBABILITIES distils from an earlier call's teachers, and $runs holds none" \
      "(${teacher}_s*/final_recalibrated.keras): run the teachers with the same RUNS on the same machine first" >&2
    exit 2
  fi
  if [ -n "${TEACHER_PROBABILITIES:-}" ]; then  # e.g. teachers a time limit stopped after their first epoch
    teachers_accuracy=$(awk '/^ensemble of/ {print $5}' "$runs/ensemble.log" 2>/dev/null)
    if ! awk -v found="${teachers_accuracy:-0}" -v least="${MIN_TEACHER_ACCURACY:-0.6}" 'BEGIN {exit !(found >= least)}'; then
      echo "LIVE_TEACHERS: the teachers in $runs score ${teachers_accuracy:-nothing} on validation ($runs/ensemble.log)," \
        "under MIN_TEACHER_ACCURACY ${MIN_TEACHER_ACCURACY:-0.6}: they did not finish" >&2
      exit 2
    fi
  fi
fi
mkdir -p "$runs" "$results"

epoch_seconds() {  # the slowest time printed in the given logs for the epoch given first
  local epoch=$1; shift
  grep -h "^epoch *$epoch " "$@" | grep -oE "  [0-9]+\.[0-9]s" | tr -d ' s' | sort -g | tail -1
}
pack_results() {
  (cd "$runs" && tar czf "$results/results.tar.gz" ./*.log ./*/config.json ./*/history.csv ./*/state.json)
}

probe_teachers() {
  for seed in "${teacher_seeds[@]}"; do
    python3 -m models.train "${common[@]}" --output-dir "$runs/probe_$seed" "${teacher_net[@]}" --epochs 2 \
      --seed "$seed" >"$runs/probe_$seed.log" 2>&1 &
  done
  wait
  epoch_seconds 2 "$runs"/probe_*.log  # the second epoch: after the backend's compilation and warm-up
}
# batch-norm statistics of the last epoch measured anew on clean faces (here: +2.4 points for a width-48 teacher)
recalibrate() {  # run_name
  python3 -m models.recalibrate --data "$data" --model "$runs/$1/final.keras" \
    --output "$runs/$1/final_recalibrated.keras" >"$runs/recalibrate_$1.log" 2>&1
}
set_teacher_seconds() {  # the teachers' time from now: TEACHER_SHARE (half) of what is left, all but
  # ENSEMBLE_SECONDS with TEACHERS_ONLY
  local left=$((budget - (SECONDS - start)))
  if [ -n "${TEACHERS_ONLY:-}" ]; then
    teacher_seconds=$((left - ${ENSEMBLE_SECONDS:-130}))
  else
    teacher_seconds=$(python3 -c "print(${TEACHER_SHARE:-0.5} * $left)")
  fi
  teacher_seconds=$(python3 -c "print(max(1, $teacher_seconds))")
}
choose_teacher_epochs() {  # sets teacher_epochs, teacher_epoch (seconds) and probe_start (a process's start)
  probe=$(probe_teachers)
  if [ -z "$probe" ] && [ "$KERAS_BACKEND" = jax ]; then  # fall back to Keras's PyTorch backend
    tail -n 5 "$runs"/probe_1.log; rm -rf "$runs"/probe_*; export KERAS_BACKEND=torch; probe=$(probe_teachers)
  fi
  [ -n "$probe" ] || { tail -n 20 "$runs"/probe_1.log; exit 1; }
  grep -h "parameters\|Keras on" "$runs"/probe_1.log
  # TEACHER_SHARE (half) of what is left goes to the teachers (all but ENSEMBLE_SECONDS with TEACHERS_ONLY),
  # less their start (the probe's time beyond its two epochs: the compile cache does not shorten it)
  teacher_epoch=$probe
  probe_start=$(python3 -c "print(max(10, $((SECONDS - start)) - 2 * $probe))")
  set_teacher_seconds
  teacher_epochs=$(python3 -c "print(max(1, int(($teacher_seconds - $probe_start) / $teacher_epoch)))")
  echo "probe epoch ${probe}s, start ${probe_start}s; $teacher_count teachers: $teacher_epochs epochs of about ${teacher_epoch}s"
  if [ "$teacher_epochs" -lt "${MIN_TEACHER_EPOCHS:-20}" ]; then
    if [ -n "${COMBINE_WITH:-}" ] && [ -z "${TEACHERS_ONLY:-}" ]; then
      echo "too slow for this budget: no teachers; the students distil from $COMBINE_WITH"; return 1
    fi
    echo "too slow for this budget: stopping before the teachers"; pack_results; exit 1
  fi
}
train_teachers() {
  if [ -n "${TEACHER_EPOCHS:-}" ]; then  # no probe: an H100 took 75 s to start six teachers, then 1.6-3.7 s per epoch
    teacher_epochs=$TEACHER_EPOCHS teacher_epoch=4 probe_start=75
    set_teacher_seconds
  else
    choose_teacher_epochs || return 1
  fi
  for seed in "${teacher_seeds[@]}"; do
    # the even seeds also erase rectangles (TEACHER_ERASING, default 0.5; 0: none), so that the call measures it
    erasing=$([ $((seed % 2)) -eq 0 ] && echo "${TEACHER_ERASING:-0.5}" || echo 0)
    python3 -m models.train "${common[@]}" --output-dir "$runs/${teacher}_s$seed" "${teacher_net[@]}" \
      --epochs "$teacher_epochs" --mixup 0.2 --random-erasing "$erasing" --seed "$seed" \
      --time-limit "$teacher_seconds" >"$runs/${teacher}_s$seed.log" 2>&1 &
  done
  wait
  grep -h "Keras on" "$runs/${teacher}_s${teacher_seeds[0]}.log"
  grep -h "stopped after" "$runs/$teacher"_s*.log
  tail -n 2 "$runs/$teacher"_s*.log
  for seed in "${teacher_seeds[@]}"; do recalibrate "${teacher}_s$seed" & done
  wait
  tail -n 3 "$runs"/recalibrate_teacher_*.log
  teachers=("$runs/$teacher"_s*/final_recalibrated.keras)
  python3 -m models.ensemble --data "$data" --members "${teachers[@]}" --output "$results/teachers_probabilities.npz" \
    | tee "$runs/ensemble.log"
  pack_results
  cp "$results/teachers_probabilities.npz" "$runs/" || exit 1  # for a later call with the same RUNS
  left=$((budget - (SECONDS - start)))
  teacher_epoch_measured=$(epoch_seconds 2 "$runs/$teacher"_s*.log)  # a student's epoch costs at most this
  student_epochs=${STUDENT_EPOCHS:-$(python3 -c \
    "print(max(5, int(($left - 40 - $probe_start) / ${teacher_epoch_measured:-$teacher_epoch})))")}
}
choose_teacher_file() {  # the teachers' file, COMBINE_WITH or the two as equal members: the best on validation
  teacher_file=$results/teachers_probabilities.npz
  [ -n "${COMBINE_WITH:-}" ] || return 0
  python3 -m models.ensemble --data "$data" --members "$teacher_file" "$COMBINE_WITH" \
    --output "$runs/teachers_combined.npz" | tee "$runs/combine.log"
  [ -f "$runs/teachers_combined.npz" ] || exit 1
  teacher_file=$(awk '/^ensemble of/ {print $5, $NF; next} / validation / {sub(":$", "", $1); print $3, $1}' \
    "$runs/combine.log" | sort -g | tail -1 | cut -d' ' -f2)
  cp "$runs/teachers_combined.npz" "$results/"
  echo "the strongest teachers' file on validation: $teacher_file"
}
if [ -n "${TEACHER_PROBABILITIES:-}" ]; then
  cp "$TEACHER_PROBABILITIES" "$results/teachers_probabilities.npz" || exit 1
  student_epochs=${STUDENT_EPOCHS:-120}
else
  if ! train_teachers; then  # too slow: the students distil from COMBINE_WITH alone, for a fixed number of epochs
    cp "$COMBINE_WITH" "$results/teachers_probabilities.npz" || exit 1
    unset COMBINE_WITH
    student_epochs=${STUDENT_EPOCHS:-60}
  fi
  if [ -n "${TEACHERS_ONLY:-}" ]; then
    if [ -n "${COMBINE_WITH:-}" ]; then choose_teacher_file; fi
    echo "done in $((SECONDS - start))s (teachers only)"; exit 0
  fi
fi
choose_teacher_file
widths=${STUDENT_WIDTHS:-32} start_weights=models/emotion_cnn.keras
from_shipped=${STUDENTS_FROM_SHIPPED:-}${LIVE_TEACHERS:-}  # the students start from the shipped weights
if [ -n "$from_shipped" ] && [ "$widths" != 32 ]; then  # before the students' time is counted
  start_weights=$runs/shipped_w${widths// /-}.keras
  # shellcheck disable=SC2086  # the widths are one word per block
  python3 -m models.resize --model models/emotion_cnn.keras --data "$data" --width $widths \
    --output "$start_weights" 2>&1 | tee "$runs/resize.log" | tail -n 2
  [ -f "$start_weights" ] || { pack_results; exit 1; }
fi
swa_start=$(python3 -c "print(int(0.6 * $student_epochs) + 1)")
student_seconds=$((budget - (SECONDS - start) - ${STUDENT_RESERVE:-60}))
((student_seconds >= 1)) || student_seconds=1
echo "students: $student_epochs epochs, weights averaged from epoch $swa_start, at most ${student_seconds}s"
student() {  # name "block widths" teacher_weight mixup seed cached|live [more arguments]
  local name=$1 widths=$2 weight=$3 mixup=$4 seed=$5 teaching=(--teacher "$teacher_file"); shift 5
  # live: the teachers in RUNS (this call's or an earlier one's) inside the training step (models.train --live-teacher)
  [ "$1" = live ] && teaching=(--teacher "$runs/$teacher"_s*/final_recalibrated.keras --live-teacher)
  shift
  # shellcheck disable=SC2086  # the widths are one word per block
  python3 -m models.train "${common[@]}" --output-dir "$runs/$name" --width $widths --epochs "$student_epochs" \
    "${teaching[@]}" --teacher-weight "$weight" --mixup "$mixup" --seed "$seed" \
    --swa-start-epoch "$swa_start" --class-weight-power 0.3 --time-limit "$student_seconds" "$@" >"$runs/$name.log" 2>&1 &
}
if [ -n "${LIVE_TEACHERS:-}" ]; then  # cycle 21's recipe from the teachers' file, and three live from the teachers
  # (the first two alike but for the teaching: the same seed, so the same faces in the same order and mixup)
  for rate_mixup_seed_kind in "1e-3 0.2 32 cached" "1e-3 0.2 32 live" "1e-3 1.0 35 live" "2e-3 0.2 34 live"; do
    read -r rate mixup seed kind <<<"$rate_mixup_seed_kind"
    student "student_w${widths// /-}_shipped_lr${rate}_mix${mixup}_$kind" "$widths" 0.7 "$mixup" "$seed" \
      "$kind" --init-weights "$start_weights" --learning-rate "$rate"
  done
elif [ -n "${STUDENTS_FROM_SHIPPED:-}" ]; then  # GPU try 3's four, all from the shipped weights
  for rate_mixup_seed in "5e-4 0.2 31" "1e-3 0.2 32" "1e-3 0.0 33" "2e-3 0.2 34"; do
    read -r rate mixup seed <<<"$rate_mixup_seed"
    student "student_w${widths// /-}_shipped_lr${rate}_mix$mixup" "$widths" 0.7 "$mixup" "$seed" cached \
      --init-weights "$start_weights" --learning-rate "$rate"
  done
else
  student student_w32_tw07_mix02 32 0.7 0.2 11 cached
  student student_w32_tw09_mix00 32 0.9 0.0 12 cached
  student student_w32-80-160-320_tw07_mix02 "32 80 160 320" 0.7 0.2 14 cached  # 0.86 ms per face INT8, as w36
  # from the shipped weights, at a lower rate
  student student_w32_shipped_tw07_mix02 32 0.7 0.2 13 cached --init-weights models/emotion_cnn.keras \
    --learning-rate 1e-3
fi
wait
grep -h "stopped after" "$runs"/student_*.log
tail -n 2 "$runs"/student_*.log
for run in "$runs"/student_*/; do
  cp "$run/best.keras" "$results/$(basename "$run").keras"
done
if [ -n "$from_shipped" ]; then  # one start, so their weights average (models.soup)
  python3 -m models.soup --data "$data" --members "$runs"/student_*/best.keras --output-dir "$runs/students_soup"
  cp "$runs/students_soup/best.keras" "$results/students_soup.keras"
fi
pack_results
echo "done in $((SECONDS - start))s"
