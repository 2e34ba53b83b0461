#!/usr/bin/env bash
# Set up (first run only), lint (ruff), and run the whole test suite: unit, train, integration (real aiortc
# peers) and browser (real headless Chromium). Extra arguments go to pytest, e.g. -m unit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test: Chromium is needed for the browser tests (Debian: sudo apt-get install chromium)" >&2
    exit 1
  fi
fi
bash scripts/setup_env.sh test
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest "$@"
