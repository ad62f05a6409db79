#!/usr/bin/env bash
# The main job, on a fresh machine too: simulated serial key reader -> cbs-agent -> a local
# mosquitto -> readouts printed as they arrive, then the last car's vehicle test (cbs-agent
# diagnose against cbs-sim vehicle). Sets up .venv and mosquitto first (once).
# Options go to examples/demo.py (see --help), e.g. `bash examples/demo.sh --sessions 20 --faults`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/.ci/bootstrap.sh"
exec "$VENV_PY" "$ROOT/examples/demo.py" "$@"
