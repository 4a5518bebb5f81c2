#!/usr/bin/env bash
# Installs the Debian packages some tests drive from the outside, when missing:
#   chromium        the browser the web app's Playwright tests run in (never `playwright install`)
#   docker-compose  validates docker-compose.yml offline (`docker-compose config -q`, no engine needed)
#   promtool        checks and unit-tests the Prometheus alert rules (package `prometheus`)
# Needs apt-get and root (or sudo). Elsewhere it says what to install and fails.
set -euo pipefail

declare -A PACKAGE=([chromium]=chromium [docker-compose]=docker-compose [promtool]=prometheus)
missing=()
for tool in "${!PACKAGE[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGE[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "==> installing Debian packages: ${missing[*]} (one time)"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install ${missing[*]} with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The prometheus package would start a server: keep services from starting.
install_pkgs() { $SUDO env RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
install_pkgs || { $SUDO apt-get update -qq >/dev/null && install_pkgs; }
