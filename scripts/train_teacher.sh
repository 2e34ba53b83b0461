#!/usr/bin/env bash
# The exact command that produced the teacher in runs/teacher_cpu (1100 steps, about an hour on the
# 2-core CPU machine, in the background). On a GPU: python -m train teacher --preset teacher_gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE  # two busy-waiting OpenMP pools on 2 cores stall each other
exec python -m train teacher --preset teacher_cpu "$@"
