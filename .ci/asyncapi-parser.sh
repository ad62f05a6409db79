#!/usr/bin/env bash
# Installs the AsyncAPI project's parser (@asyncapi/parser, from npm) into a cache directory
# outside the work tree, once per version, and prints that directory's node_modules path.
# Used by .ci/bootstrap.sh and by tests/contract/test_asyncapi.py. Needs node and npm.
set -euo pipefail
VERSION="3.6.3"
CACHE="${CBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cbs-agent}/asyncapi-parser-$VERSION"
if [ ! -f "$CACHE/node_modules/@asyncapi/parser/package.json" ]; then
  echo "asyncapi-parser: installing @asyncapi/parser $VERSION into $CACHE" >&2
  mkdir -p "$CACHE"
  npm install --prefix "$CACHE" --no-save --no-audit --no-fund --loglevel=error \
    "@asyncapi/parser@$VERSION" >&2
fi
echo "$CACHE/node_modules"
