#!/usr/bin/env bash
# Makes sure a Docker Engine answers on this machine (`make engine`). Idempotent:
#   - an engine already answers (`docker info`)  -> says so, changes nothing;
#   - `dockerd` is missing                       -> apt-get installs Debian's docker.io;
#   - `dockerd` is installed but not running     -> starts /usr/sbin/dockerd in the
#     background (log .data/docker/dockerd.log, pid .data/docker/dockerd.pid) and
#     waits until `docker info` answers (DOCKER_WAIT seconds, default 60).
# It also installs, when missing, iptables (the host-agent manages firewall rules)
# and mmdebstrap (`make images` builds the base image's root filesystem with it).
#
# Why root: installing packages and running dockerd (it creates network bridges,
# firewall rules, cgroups and overlay mounts) need root. As another user it uses
# sudo when there is one, and otherwise stops with a sentence saying so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${DOCKER_STATE_DIR:-$ROOT/.data/docker}"
WAIT="${DOCKER_WAIT:-60}"
DOCKERD=/usr/sbin/dockerd

say() { echo "==> engine: $*"; }
die() { echo "error: engine: $*" >&2; exit 1; }

SUDO=()
need_root() {
  # $1: what needs root, for the message.
  [ "$(id -u)" -eq 0 ] && return 0
  [ ${#SUDO[@]} -gt 0 ] && return 0
  command -v sudo >/dev/null 2>&1 \
    || die "$1 needs root (packages, network bridges, firewall rules, cgroups); run as root or install sudo"
  say "$1 needs root: using sudo"
  SUDO=(sudo)
}

engine_answers() {
  docker info >/dev/null 2>&1 || { [ ${#SUDO[@]} -gt 0 ] && "${SUDO[@]}" docker info >/dev/null 2>&1; }
}

apt_install() {
  # Waits up to 10 minutes for a dpkg lock another install may hold.
  local apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
  say "apt-get update"
  "${apt[@]}" update -qq >/dev/null
  say "apt-get install $*"
  "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
[ -x "$DOCKERD" ] || missing+=(docker.io)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)

if [ ${#missing[@]} -eq 0 ] && engine_answers; then
  say "a Docker Engine already answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')); nothing to do"
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 \
    || die "missing ${missing[*]} and no apt-get here: install Docker Engine, iptables and mmdebstrap with your package manager"
  need_root "installing ${missing[*]}"
  apt_install "${missing[@]}"
  command -v docker >/dev/null 2>&1 || die "docker.io is installed but no docker CLI is on PATH"
fi

if engine_answers; then
  say "a Docker Engine answers; nothing more to do"
  exit 0
fi

need_root "starting dockerd"
mkdir -p "$STATE"
log="$STATE/dockerd.log"
pidfile="$STATE/dockerd.pid"
started=no
if pid="$(pgrep -x dockerd | head -n 1)" && [ -n "$pid" ]; then
  log="the log of dockerd pid $pid (not started by this script)"
  say "a dockerd is running (pid $pid) but does not answer yet: waiting for it"
else
  say "no engine answers: starting $DOCKERD in the background (log $log, pid file $pidfile)"
  # setsid: dockerd outlives this make run and its terminal.
  "${SUDO[@]}" setsid "$DOCKERD" --pidfile "$pidfile" >>"$log" 2>&1 </dev/null &
  started=yes
fi

for _ in $(seq "$WAIT"); do
  if engine_answers; then
    say "dockerd is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
  fi
  sleep 1
  if ! pgrep -x dockerd >/dev/null; then
    [ "$started" = yes ] && tail -n 20 "$log" >&2
    die "dockerd exited while starting; its log is $log"
  fi
done
[ "$started" = yes ] && tail -n 20 "$log" >&2
die "dockerd did not answer within ${WAIT} s (DOCKER_WAIT); its log is $log"
