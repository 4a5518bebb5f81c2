"""Benchmark: how long a tenant container takes to boot OpenClaw to /readyz,
with the image's V8 compile cache (deploy/openclaw/Dockerfile bakes it in)
against without it (`NODE_DISABLE_COMPILE_CACHE=1`, the baseline), in turns,
in the same run.

Each run is one container with the tenant's limits (1 CPU, 1.5 GB, read-only
root, tmpfs /tmp, no capabilities) and a fresh state folder. It prints:

- first boot: a new assistant (OpenClaw creates its state), from `docker run`;
- restart: the same container stopped and started again, what a wake from
  stopped pays, from `docker start`.

    make images && uv run python bench/boot.py
    BENCH_BOOT_RUNS=5 uv run python bench/boot.py

Needs a Docker Engine (`make engine`) and the tenant image (`make images`).
Packets go only to this machine: the containers' ports on loopback.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from containers import IMAGE, docker, require_engine
from yourclaw_common.embedded import free_port

RUNS = int(os.environ.get("BENCH_BOOT_RUNS", "3"))
TIMEOUT = 300.0
_STATE = "/home/node/.openclaw"
_ENV = {
    "HOME": "/home/node",
    "OPENCLAW_HOME": "/home/node",
    "OPENCLAW_STATE_DIR": _STATE,
    "OPENCLAW_CONFIG_PATH": f"{_STATE}/openclaw.json",
    "OPENCLAW_WORKSPACE_DIR": f"{_STATE}/workspace",
    "XDG_CACHE_HOME": f"{_STATE}/cache",
    "TMPDIR": "/tmp",
    "OPENCLAW_NO_RESPAWN": "1",
    "OPENCLAW_DISABLE_BONJOUR": "1",
}


def _ready(port: int, since: float) -> float:
    """Seconds from `since` until the gateway's /readyz answers 200."""
    url = f"http://127.0.0.1:{port}/readyz"
    while time.perf_counter() - since < TIMEOUT:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - since
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"no /readyz on {port} within {TIMEOUT:g} s")


def one(cached: bool) -> tuple[float, float]:
    """(first boot, restart) seconds of one container."""
    state = Path(tempfile.mkdtemp(prefix="yourclaw-boot-"))
    (state / "workspace").mkdir()
    auth = {"mode": "token", "token": os.urandom(16).hex()}
    gateway = {"mode": "local", "port": 18789, "auth": auth}
    (state / "openclaw.json").write_text(json.dumps({"gateway": gateway}))
    shutil.chown(state, 1000, 1000)
    for path in state.rglob("*"):
        shutil.chown(path, 1000, 1000)
    port = free_port("127.0.0.1")
    env = {**_ENV, **({} if cached else {"NODE_DISABLE_COMPILE_CACHE": "1"})}
    started = time.perf_counter()
    cid = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp:exec,mode=1777",
        "--user", "1000:1000", "--cpus", "1", "--memory", "1536m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "--hostname", "assistant",
        *(arg for k, v in env.items() for arg in ("-e", f"{k}={v}")),
        "-v", f"{state}:{_STATE}", "-p", f"127.0.0.1:{port}:18789", IMAGE,
    ).strip()  # fmt: skip
    try:
        first = _ready(port, started)
        time.sleep(5)  # settled, as a sleeper is before its stop
        docker("stop", "-t", "10", cid)
        started = time.perf_counter()
        docker("start", cid)
        return first, _ready(port, started)
    finally:
        docker("rm", "-f", cid)
        shutil.rmtree(state, ignore_errors=True)


def _line(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):5.1f} s · min {min(values):5.1f} s · "
        f"max {max(values):5.1f} s · n {len(values)}"
    )


def main() -> None:
    require_engine()
    cores = os.cpu_count()
    print(f"{platform.machine()}, {cores} CPUs; {IMAGE}; {RUNS} runs each, in turns")
    figures: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(RUNS):
        for cached in (False, True):
            figures[cached].append(one(cached))
    for kind, index in (("first boot", 0), ("restart", 1)):
        base = [f[index] for f in figures[False]]
        cached = [f[index] for f in figures[True]]
        gain = statistics.median(base) - statistics.median(cached)
        print(f"\n{kind}")
        print(f"  without the compile cache (baseline)  {_line(base)}")
        print(f"  with the image's compile cache        {_line(cached)}")
        print(f"  → {abs(gain):.1f} s {'sooner' if gain >= 0 else 'later'} at p50")


if __name__ == "__main__":
    main()
