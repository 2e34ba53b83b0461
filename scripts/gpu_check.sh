#!/usr/bin/env bash
# The GPU check in one call, well under 8 minutes: the `gpu` tests, then the GPU benchmark table
# (network-only ms, full yuv path ms, batch-8 frames/s, card name). Works on a bare GPU machine with
# only this checkout copied there: nothing is installed, the repo is put on PYTHONPATH.
# With TensorRT importable it also builds an FP16 engine and adds it to the table.
# Usage: bash scripts/gpu_check.sh [RECORD.md]      (GPU_CHECK_COMPILE=1 adds a torch.compile row;
#        GPU_CHECK_TEST_S and GPU_CHECK_TOTAL_S cap the tests and the whole check, default 300 and 450 s)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
py="${PYTHON:-python3}"
record="${1:-}"
start=$SECONDS

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
  || echo "gpu_check: nvidia-smi not found"
if ! "$py" -c 'import sys, torch; print("torch", torch.__version__, "cuda", torch.version.cuda); sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: torch sees no CUDA GPU" >&2
  exit 3
fi

gpu_tests=(tests/test_gpu.py)
"$py" -c 'import aiortc, av' 2>/dev/null && gpu_tests+=(tests/test_frame_path.py)  # the live frame path, batched
timeout "${GPU_CHECK_TEST_S:-300}" "$py" -m pytest -m gpu -q -s -rs -p no:cacheprovider "${gpu_tests[@]}"
tests=$?

engine_args=()
backends="torch-cuda-fp16,torch-cuda-fp32"
if "$py" -c 'import tensorrt' 2>/dev/null; then
  trt_dir="${TMPDIR:-/tmp}/stylizer-trt-fp16"
  if timeout 240 "$py" -m engines build --checkpoint engines/models/default --backend tensorrt --precision fp16 \
      --size 1280x720 --dynamic 640x360:1280x720:1920x1080 --out "$trt_dir"; then
    engine_args=(--engine "$trt_dir")
    backends="tensorrt,$backends"
  fi
else
  echo "gpu_check: TensorRT not installed here; its rows are skipped"
fi
compile_args=()
[ "${GPU_CHECK_COMPILE:-0}" = 1 ] && compile_args=(--compile)

remaining=$(( ${GPU_CHECK_TOTAL_S:-450} - (SECONDS - start) ))
[ $remaining -lt 60 ] && remaining=60
timeout "$remaining" "$py" -m engines bench-gpu --frames 200 --backends "$backends" "${engine_args[@]}" \
  "${compile_args[@]}" ${record:+--record "$record"}
bench=$?
# The live server path on the GPU: real aiortc peers at 1280x720 through `realtime serve` on torch-cuda FP16
# (frames batched across sessions). Per row: fps and p95 latency per peer, and the server's stage sums, age
# histogram and batch counters (--verbose). Needs aiortc and PyAV there (scripts/stage_gpu.sh carries them).
live=0
live_json="${TMPDIR:-/tmp}/live_gpu.json"
rm -f "$live_json"
if [ "${GPU_CHECK_LIVE:-1}" = 1 ] && "$py" -c 'import aiortc, av' 2>/dev/null; then
  left=$(( ${GPU_CHECK_TOTAL_S:-450} + ${GPU_CHECK_LIVE_S:-240} - (SECONDS - start) ))
  if [ $left -gt 60 ]; then
    timeout "$left" "$py" scripts/load_test.py load --peers "${GPU_CHECK_PEERS:-1,4,8,16}" \
      --size 1280x720 --seconds 12 --warmup 5 --server-arg=--backend --server-arg=torch-cuda-fp16 --json "$live_json"
    live=$?
    [ -f "$live_json" ] && cat "$live_json"
  else
    echo "gpu_check: no time left for the live server rows"
  fi
else
  echo "gpu_check: aiortc/PyAV not importable here; the live server rows are skipped"
fi
echo "gpu_check: tests exit $tests, bench exit $bench, live exit $live, $((SECONDS - start)) s in all"
[ $tests -eq 0 ] && [ $bench -eq 0 ]
