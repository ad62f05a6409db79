#!/usr/bin/env bash
# Shared set-up for the README's two commands and CI: a virtualenv with the project installed
# (editable, with test extras) and mosquitto from Debian's packages when it is missing.
# Idempotent and quiet when everything is already there. Source it; it exports VENV_PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CBS_VENV:-$ROOT/.venv}"

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "bootstrap: mosquitto is not installed; installing it from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  # We start our own brokers on free ports; do not leave Debian's service holding 1883 if it was not there.
fi
if ! command -v mosquitto_passwd >/dev/null 2>&1 && [ ! -x /usr/bin/mosquitto_passwd ]; then
  echo "bootstrap: installing mosquitto-clients/mosquitto_passwd" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi

stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating $VENV and installing cbs-agent with its dependencies" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
export VENV_PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
