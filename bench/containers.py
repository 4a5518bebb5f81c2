"""Benchmark: assistants in hardened containers on the real Docker Engine.

One provisioner, one host-agent (docker runtime, its firewall included) and
the LLM stand-in, on embedded NATS and PostgreSQL. Prints:

- request→READY for BENCH_CONTAINER_USERS users provisioned one after another
  (cold: every container boots OpenClaw), beside the same figure for the
  process runtime in the same run (the baseline);
- the same with a warm pool of one spare container (WARM_POOL_SIZE=1): each
  user arrives once the pool holds a booted spare (sign-ups further apart
  than a boot), so the figure is a claim, not a boot; the first user's spare
  booted before the agent saw any config (a fresh host), the later ones from
  the last create's config, so each user's figure is printed too;
- idle RSS of each assistant container (its cgroup's resident memory after
  BENCH_IDLE_SECONDS without traffic) and so containers per GB of host memory;
- time to serve again after `docker rm -f` of a tenant: the provisioner's
  reconcile re-creates it (RECONCILE_INTERVAL_SECONDS, default 10 s, bounds
  how soon it notices), workspace kept.

    make images && uv run python bench/containers.py
    BENCH_CONTAINER_USERS=5 uv run python bench/containers.py

Needs a Docker Engine (`make engine`) and the tenant image (`make images`).
Packets go only to this machine: loopback and the docker bridge's gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from pathlib import Path

import httpx
import nats
from _stack import bench_infra, provisioner_env
from _stack import stop as stop_procs
from provisioning import (
    ReadyWatch,
    _hosts_known,
    _new_users,
    _pct,
    _start_provisioners,
)
from yourclaw_common.db import create_pool
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    AssistantDeprovisionRequested,
    AssistantProvisionRequested,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.devsim import DevsimSettings, running_devsim
from yourclaw_host_agent.app import run as run_host_agent
from yourclaw_host_agent.firewall import Firewall, TenantFirewallPlan
from yourclaw_host_agent.install_openclaw import DEFAULT_OPENCLAW_HOME, OPENCLAW_VERSION
from yourclaw_host_agent.settings import HostAgentSettings

USERS = int(os.environ.get("BENCH_CONTAINER_USERS", "3"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "30"))
IMAGE = os.environ.get("OPENCLAW_IMAGE", f"yourclaw-openclaw:{OPENCLAW_VERSION}")
REPO = Path(__file__).resolve().parents[1]


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()


def bridge_gateway() -> str:
    ipam = json.loads(docker("network", "inspect", "bridge"))[0]["IPAM"]["Config"]
    return str(ipam[0].get("Gateway") or "172.17.0.1")


def container_rss_mb(name: str) -> float:
    """Resident memory of a container's cgroup (anonymous memory, no page cache)."""
    stats = json.loads(
        subprocess.run(
            [
                "curl", "-s", "--unix-socket", "/var/run/docker.sock",
                f"http://docker/containers/{name}/stats?stream=false",
            ],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    )  # fmt: skip
    mem = stats["memory_stats"]
    inner = mem.get("stats", {})
    rss = inner.get("total_rss", inner.get("rss", inner.get("anon")))
    if rss is None:
        rss = mem["usage"] - inner.get("total_inactive_file", 0)
    return float(rss) / (1024 * 1024)


def host_memory_mb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


async def _ready(port: int, timeout: float) -> float:
    start = time.perf_counter()
    deadline = start + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.perf_counter() < deadline:
            with suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).is_success:
                    return time.perf_counter() - start
            await asyncio.sleep(0.1)
    raise TimeoutError(f"nothing ready on port {port}")


async def _spare_booted(data_dir: str) -> bool:
    """Whether the host-agent of `data_dir` holds a spare past /readyz."""
    ports = docker(
        "ps", "--filter", "label=yourclaw.pool-slot",
        "--filter", f"label=yourclaw.data_dir={data_dir}",
        "--filter", "name=yourclaw-pool-",
        "--format", '{{.Label "yourclaw.port"}}',
    ).split()  # fmt: skip
    for port in ports:
        with suppress(TimeoutError):
            await _ready(int(port), timeout=0.5)
            return True
    return False


async def run_stack(
    runtime: str,
    nats_url: str,
    database_url: str,
    base_env: dict[str, str],
    tmp: Path,
    *,
    warm_pool: int = 0,
) -> dict[str, object]:
    suffix = uuid.uuid4().hex[:6]
    bridge, network = f"ycb{suffix}", f"yourclaw-bench-{suffix}"
    # Its containers are labelled with it (the spares outlive the agent);
    # `tmp` is resolved.
    data_dir = str(tmp / f"host-{runtime}-{suffix}")
    gateway_ip = bridge_gateway() if runtime == "docker" else "127.0.0.1"
    llm_port = free_port(gateway_ip)
    llm_host = "host.docker.internal" if runtime == "docker" else "127.0.0.1"
    settings = HostAgentSettings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=nats_url,
        database_url=database_url,
        host_runtime=runtime,  # type: ignore[arg-type]
        yourclaw_env="dev",
        host_id=f"bench-{runtime}-{suffix}",
        host_capacity=USERS,
        host_heartbeat_seconds=1,
        host_data_dir=Path(data_dir),
        warm_pool_size=warm_pool,
        openclaw_image=IMAGE,
        openclaw_install_dir=(REPO / DEFAULT_OPENCLAW_HOME).resolve(),
        tenant_network=network,
        tenant_bridge=bridge,
        tenant_host_ports=[llm_port],
        log_level="WARNING",
    )
    nc = await nats.connect(nats_url)
    pool = await create_pool(database_url, max_size=2)
    watch = ReadyWatch()
    await nc.subscribe("assistant.ready", cb=watch.on_ready)
    stop = asyncio.Event()
    agent = asyncio.create_task(run_host_agent(settings, stop))
    result: dict[str, object] = {"runtime": runtime, "warm_pool": warm_pool}
    users: list[uuid.UUID] = []
    async with running_devsim(
        DevsimSettings(_env_file=None, devsim_status_callbacks=False),  # type: ignore[call-arg]
        host=gateway_ip,
        port=llm_port,
    ):
        env = {
            **base_env,
            "DEV_LLM_BASE_URL": f"http://{llm_host}:{llm_port}",
            "OPENCLAW_IMAGE": IMAGE,
        }
        procs = _start_provisioners(env, 1)
        try:
            await _hosts_known(pool, 1)
            users = await _new_users(pool, USERS)
            latencies = []
            for user_id in users:
                if warm_pool:
                    await eventually(
                        lambda: _spare_booted(data_dir),
                        timeout=300,
                        interval=0.5,
                    )
                sent = time.perf_counter()
                await publish(
                    nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
                )
                await watch.wait_for([user_id], timeout=300)
                latencies.append(watch.at[user_id] - sent)
            result["ready"] = latencies
            if runtime == "docker" and not warm_pool:
                await asyncio.sleep(IDLE_SECONDS)
                result["rss"] = [
                    await asyncio.to_thread(container_rss_mb, f"yourclaw-{u}")
                    for u in users
                ]
                victim = users[0]
                port = await pool.fetchval(
                    "SELECT port FROM assistants WHERE user_id = $1", victim
                )
                removed = time.perf_counter()
                await asyncio.to_thread(docker, "rm", "-f", f"yourclaw-{victim}")
                await asyncio.sleep(0.5)  # the old one is gone
                await _ready(int(port), timeout=300)
                result["recreate"] = time.perf_counter() - removed
        finally:
            for user_id in users:
                await publish(
                    nc.jetstream(), AssistantDeprovisionRequested(user_id=user_id)
                )

            async def gone() -> bool:
                return not await pool.fetchval(
                    "SELECT count(*) FROM assistants WHERE host_id IS NOT NULL"
                )

            with suppress(AssertionError):
                await eventually(gone, timeout=120, interval=0.5)
            stop_procs(procs, timeout=20)
            stop.set()
            await agent
            await pool.close()
            await nc.drain()
            if runtime == "docker":
                # The spares outlive their agent (the next one adopts them).
                for name in docker(
                    "ps", "-aq", "--filter",
                    f"label=yourclaw.data_dir={data_dir}",
                ).split():  # fmt: skip
                    docker("rm", "-f", name)
                await Firewall(TenantFirewallPlan(bridge=bridge)).remove()
                with suppress(subprocess.CalledProcessError):
                    docker("network", "rm", network)
    return result


def _line(values: list[float], unit: str) -> str:
    return (
        f"p50 {statistics.median(values):.2f} {unit} · "
        f"p99 {_pct(values, 0.99):.2f} {unit} · max {max(values):.2f} {unit}"
    )


def require_engine() -> None:
    """Exit with what to run when no Docker Engine answers or the tenant image
    is missing."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        sys.exit("no Docker Engine answers: run `make engine`")
    if not docker("images", "-q", IMAGE):
        sys.exit(f"the tenant image {IMAGE} is missing: run `make images`")


def main() -> None:
    require_engine()
    with bench_infra("yourclaw-bench-ctr-", "yourclaw_bench_containers") as bench:
        tmp, infra = bench
        env = provisioner_env(infra)
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{host_memory_mb() / 1024:.1f} GiB, {USERS} users one after another"
        )
        results = [
            asyncio.run(
                run_stack(
                    runtime,
                    infra.operator_url,
                    infra.database_url,
                    env,
                    tmp,
                    warm_pool=warm,
                )
            )
            for runtime, warm in (("process", 0), ("docker", 0), ("docker", 1))
        ]
    for result in results:
        ready = result["ready"]
        assert isinstance(ready, list)
        pool = (
            f"warm pool of {result['warm_pool']}, each user once a spare is booted"
            if result["warm_pool"]
            else "cold: no warm pool"
        )
        print(f"\n{result['runtime']} runtime ({pool})")
        print(f"  request→READY     {_line(ready, 's')}")
        # In order: with a pool, the first spare of a fresh host booted before
        # the agent saw any config (no template), the later ones from one.
        print(f"  each user         {', '.join(f'{t:.2f}' for t in ready)} s")
        rss = result.get("rss")
        if isinstance(rss, list):
            mean = statistics.mean(rss)
            print(
                f"  idle RSS          {_line(rss, 'MB')} (after {IDLE_SECONDS:.0f} s idle)"
            )
            print(f"  per GB of memory  {1024 / mean:.2f} assistant containers")
        if "recreate" in result:
            print(f"  docker rm -f → serving again  {result['recreate']:.1f} s")


if __name__ == "__main__":
    main()
