#!/usr/bin/env bash
# A virtualenv with Home Assistant (the `homeassistant` package from PyPI, ~400 MB) kept in a
# cache directory outside the work tree, made once, so that the discovery payloads can be
# checked by Home Assistant's own MQTT schemas (tests/integration/test_ha_schemas.py).
# Prints the virtualenv's python. pip picks the newest Home Assistant this Python can run.
set -euo pipefail
CACHE="${CBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cbs-agent}"
PY_TAG="$(python3 -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
VENV="$CACHE/ha-venv-$PY_TAG"
if [ ! -f "$VENV/.complete" ]; then
  echo "ha-venv: installing homeassistant into $VENV (once; a few minutes)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q homeassistant paho-mqtt >&2
  "$VENV/bin/python" -c "import homeassistant.components.mqtt.discovery" >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
