#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up .venv and mosquitto, then runs pytest.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k serial -x`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CBS_TEST_TOOLS=1  # (not exported) node and the AsyncAPI parser for tests/contract
source "$ROOT/.ci/bootstrap.sh"
cd "$ROOT"
exec "$VENV_PY" -m pytest "$@"
