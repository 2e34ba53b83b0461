#!/usr/bin/env bash
# The exact commands that produced the bundled model in engines/models/default (CPU, 2 cores, ~35 min).
# Needs the project's staged data (shared/data beside this checkout, or STYLIZER_DATA) and the train extra.
set -euo pipefail
cd "$(dirname "$0")/.."
OMP_WAIT_POLICY=PASSIVE python -m train perceptual \
  --styles vangogh hokusai kandinsky monet klimt lineart \
  --steps 1600 --batch 4 --crop 224 --lr 0.0015 --seed 0 \
  --style-weight 40 --style-taps 2 4 7 10 --style-grid 1 --style-margin 0.08 \
  --content-weight 15 --content-taps 4 7 --colour-weight 30 --tv-weight 50 \
  --film-lr-scale 2 --grad-clip 1.0 --style-short-side 400 --threads 2 \
  --out runs/default_v9
rm -rf engines/models/default
cp -r runs/default_v9/model engines/models/default
python -m engines quantize engines/models/default     # student.onnx (fused graph) + calibrated student.int8.onnx
python -m train sheet engines/models/default --out docs/contact_sheet.jpg
