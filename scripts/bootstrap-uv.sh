#!/usr/bin/env bash
# Installs the pinned uv into .tools/ using only the machine's python3.
set -euo pipefail
UV_VERSION="${UV_VERSION:-0.13.9}"
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools"
PY="${PYTHON:-python3}"

if [ -x "$TOOLS/bin/uv" ] && "$TOOLS/bin/uv" --version 2>/dev/null | grep -q " $UV_VERSION"; then
  exit 0
fi
echo "==> installing uv $UV_VERSION into .tools/ (one time)"
if "$PY" -m venv "$TOOLS" >/dev/null 2>&1 && [ -x "$TOOLS/bin/pip" ]; then
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
else
  # No venv module (e.g. Debian without python3-venv): install into a folder.
  rm -rf "$TOOLS"
  "$PY" -m pip install --quiet --disable-pip-version-check --target "$TOOLS/lib" "uv==$UV_VERSION"
  mkdir -p "$TOOLS/bin"
  ln -sf "$TOOLS/lib/bin/uv" "$TOOLS/bin/uv"
fi
"$TOOLS/bin/uv" --version
