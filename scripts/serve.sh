#!/usr/bin/env bash
# Set up (first run only: the serving set, without torch; see README) and start the live stylizer on the
# bundled default model.
# Extra arguments go to `realtime serve`, e.g.: bash scripts/serve.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/realtime serve "$@"
