#!/usr/bin/env bash
# Shared set-up for the README's two commands and CI: a virtualenv with the project installed
# (editable, with test extras) and mosquitto from Debian's packages when it is missing.
# Idempotent and quiet when everything is already there. Source it; it exports VENV_PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CBS_VENV:-$ROOT/.venv}"

# Debian packages the project needs: the broker (tests and demo start their own on free ports),
# mosquitto_passwd (password-file tests), openssl (test certificates), tmux (the reception view
# is tested in a real terminal); for the tests only, node and npm, chromium with its driver and a
# CJK font (below).
need=()
{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } || need+=(mosquitto)
{ command -v mosquitto_passwd >/dev/null 2>&1 || [ -x /usr/bin/mosquitto_passwd ]; } || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)  # bench/throughput.py subscriber
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# The test suite (not the demo) checks docs/asyncapi.yaml with the AsyncAPI parser on node, and
# drives the desk in a real browser (chromium, its driver, a CJK font for the Chinese pages).
if [ "${CBS_TEST_TOOLS:-0}" = 1 ]; then
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || need+=(chromium)
  { command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ]; } || need+=(chromium-driver)
  [ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${need[*]} from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating $VENV and installing cbs-agent with its dependencies" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
if [ "${CBS_TEST_TOOLS:-0}" = 1 ] && command -v npm >/dev/null 2>&1; then
  bash "$ROOT/.ci/asyncapi-parser.sh" >/dev/null || echo "bootstrap: @asyncapi/parser not installed" >&2
fi
export VENV_PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
