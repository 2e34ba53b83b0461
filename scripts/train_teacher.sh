#!/usr/bin/env bash
# Train the GAN teacher with the CPU preset (1100 steps, about 50 minutes on the 2-core CPU machine, in the
# background). On a GPU: python -m train teacher --preset teacher_gpu.
# The run in docs/training.md (run G) was made in two legs: steps 0-300 with the preset as of commit 74953bf
# (two-sided full-resolution gradient loss, taps 0,2,4,7), then `--resume` to 1100 with this preset.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE  # two busy-waiting OpenMP pools on 2 cores stall each other
exec python -m train teacher --preset teacher_cpu "$@"
