#!/usr/bin/env bash
# The engine and the images, when this machine can have them (`make up` and
# `make test` run it first):
#   - an engine answers, or root (or sudo without a password) and apt-get or
#     dockerd are here -> scripts/ensure-docker.sh (install, start), then
#     deploy/images/build.py (a few seconds when nothing changed);
#   - otherwise -> one line saying what that means ($1) and exit 0, so the
#     make goes on: `make engine` and `make images` are the strict versions.
# Once the engine answers, a failure of the build stops the make.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WITHOUT="${1:-the container tests will be skipped}"
UV="${UV:-$ROOT/.tools/bin/uv}"

skip() {
  echo "==> containers: $1: $WITHOUT (run \`make engine images\` as root to have them)"
  exit 0
}

answers() { docker info >/dev/null 2>&1; }
can_root() {
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}

if ! answers; then
  can_root || skip "no Docker Engine answers and installing or starting one needs root (no root, no sudo)"
  command -v apt-get >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] \
    || skip "no Docker Engine answers and there is neither dockerd nor apt-get to install it"
  "$ROOT/scripts/ensure-docker.sh"
  # dockerd's socket is root's unless this user is in the docker group.
  answers || skip "the Docker Engine answers only to root (add $(id -un) to the docker group)"
elif ! command -v mmdebstrap >/dev/null 2>&1 && can_root; then
  "$ROOT/scripts/ensure-docker.sh"  # installs mmdebstrap, the base image's builder
fi

cd "$ROOT"
"$UV" run --frozen --no-sync python deploy/images/build.py >/dev/null  # ids on stdout; progress on stderr
