#!/usr/bin/env bash
# Runs buf (lint, breaking) from the npm package @bufbuild/buf, installed into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.75.0
buf=.tools/node_modules/.bin/buf
if [ ! -x "$buf" ] || [ "$("$buf" --version)" != "$BUF_VERSION" ]; then
  npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION" >&2
fi
exec "$buf" "$@"
