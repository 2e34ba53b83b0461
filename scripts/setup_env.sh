#!/usr/bin/env bash
# Creates .venv and installs the project into it (idempotent; re-runs only when pyproject.toml changes).
# Usage: bash scripts/setup_env.sh [EXTRAS], e.g. `test` or `train,tensorrt`; scripts/serve.sh passes none (the lean
# serving set, without torch) and scripts/test.sh passes `test`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv=.venv
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  if ! "$py" -c "import venv, ensurepip" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
      echo "setup: Python's venv module is missing; install it (Debian: sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  "$py" -m venv "$venv"
fi
stamp="$venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  # Serving (no extras) needs no torch: OpenVINO runs the ONNX files. The extras that do (test, train, torch,
  # tensorrt, styles) get torch 2.13.0 first, the CPU build on this project's machines; any torch>=2.11 present is kept.
  case ",$extras," in
    *,test,*|*,train,*|*,torch,*|*,tensorrt,*|*,styles,*)
      if ! "$venv/bin/python" -c "import torch, sys; v=tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 11))" 2>/dev/null; then
        "$venv/bin/python" -m pip install -q "torch==2.13.0"
      fi;;
  esac
  "$venv/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
