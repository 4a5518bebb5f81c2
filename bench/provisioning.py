"""Benchmark: provisioning throughput and request→READY latency.

1. Stand-in: BENCH_USERS users ask for an assistant at once; BENCH_REPLICAS
   provisioner processes place them on BENCH_HOSTS fake host-agents (the real
   NATS protocol and heartbeats), whose "gateways" are tiny HTTP servers
   answering /healthz and chat completions on each assigned port.
2. Real OpenClaw (when the host-agent and openclaw are installed): one
   provisioner, one host-agent with the process runtime, the LLM stand-in;
   BENCH_REAL_USERS users provisioned one after another (each gateway boot
   takes seconds and ~1.3 GB), then deprovisioned. BENCH_REAL_USERS=0 skips it.

Latency is from publishing `assistant.provision_requested` to receiving
`assistant.ready` (a core-NATS subscription sees JetStream publishes).

    uv run python bench/provisioning.py
    BENCH_USERS=500 BENCH_REPLICAS=2 BENCH_REAL_USERS=3 uv run python bench/provisioning.py

Uses NATS_URL / DATABASE_URL when set, else starts embedded servers.
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

import asyncpg
import httpx
import nats
from _stack import bench_infra, provisioner_env, stop
from nats.aio.msg import Msg
from yourclaw_common.db import create_pool
from yourclaw_common.events import (
    AssistantDeprovisionRequested,
    AssistantProvisionRequested,
    AssistantReady,
    ensure_topology,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.fake_host import FakeHost

USERS = int(os.environ.get("BENCH_USERS", "300"))
HOSTS = int(os.environ.get("BENCH_HOSTS", "4"))
REPLICAS = int(os.environ.get("BENCH_REPLICAS", "2"))
REAL_USERS = int(os.environ.get("BENCH_REAL_USERS", "3"))
REPO = Path(__file__).resolve().parents[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(title: str, latencies: list[float], elapsed: float) -> None:
    print(f"\n{title}")
    print(f"  provisions        {len(latencies)}")
    print(f"  wall time         {elapsed:.2f} s")
    print(f"  throughput        {len(latencies) / elapsed:.1f} provisions/s")
    print(
        "  request→READY     "
        f"p50 {statistics.median(latencies):.2f} s · "
        f"p90 {_pct(latencies, 0.9):.2f} s · "
        f"p99 {_pct(latencies, 0.99):.2f} s · "
        f"max {max(latencies):.2f} s"
    )


class ReadyWatch:
    """When each user's `assistant.ready` arrived."""

    def __init__(self) -> None:
        self.at: dict[uuid.UUID, float] = {}
        self.changed = asyncio.Event()

    async def on_ready(self, msg: Msg) -> None:
        event = AssistantReady.model_validate_json(msg.data)
        self.at.setdefault(event.user_id, time.perf_counter())
        self.changed.set()

    async def wait_for(self, users: list[uuid.UUID], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not all(u in self.at for u in users):
                self.changed.clear()
                await self.changed.wait()


async def _new_users(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(count)]
    await pool.executemany("INSERT INTO users (id) VALUES ($1)", [(u,) for u in users])
    return users


def _start_provisioners(
    env: dict[str, str], count: int
) -> list[subprocess.Popen[bytes]]:
    # Their logs go to BENCH_LOG_DIR when it is set.
    log_dir = os.environ.get("BENCH_LOG_DIR")
    procs = []
    for n in range(count):
        log = (
            (Path(log_dir) / f"provisioner-{n}.log").open("ab")
            if log_dir
            else subprocess.DEVNULL
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "yourclaw_provisioner"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        )
    return procs


async def _hosts_known(pool: asyncpg.Pool, count: int) -> None:
    async def known() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM hosts") >= count)

    await eventually(known, timeout=60, message="hosts heart-beating")


async def stand_in(nats_url: str, database_url: str, base_env: dict[str, str]) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_topology(js)
    pool = await create_pool(database_url, max_size=4)
    watch = ReadyWatch()
    await nc.subscribe("assistant.ready", cb=watch.on_ready)
    hosts = [
        await FakeHost(
            nc,
            host_id=f"bench-{i}",
            address=f"127.0.0.{i + 1}",
            capacity=USERS,
            heartbeat_interval=1.0,
            serve_http=True,
        ).start()
        for i in range(HOSTS)
    ]
    procs = _start_provisioners(base_env, REPLICAS)
    try:
        await _hosts_known(pool, HOSTS)
        await asyncio.sleep(2)  # the replicas bind their consumers
        users = await _new_users(pool, USERS)
        sent: dict[uuid.UUID, float] = {}
        started = time.perf_counter()

        async def request(user_id: uuid.UUID) -> None:
            sent[user_id] = time.perf_counter()
            await publish(js, AssistantProvisionRequested(user_id=user_id))

        await asyncio.gather(*(request(u) for u in users))
        await watch.wait_for(users, timeout=300)
        elapsed = max(watch.at[u] for u in users) - started
        ports = await pool.fetchval(
            "SELECT count(DISTINCT (host_id, port)) FROM assistants WHERE status = 'READY'"
        )
        _report(
            f"Stand-in gateways: {USERS} users, {HOSTS} fake hosts, "
            f"{REPLICAS} provisioner replicas",
            [watch.at[u] - sent[u] for u in users],
            elapsed,
        )
        print(f"  distinct host:port {ports} (of {USERS})")
        creates = sum(len(h.creates()) for h in hosts)
        print(f"  creates sent      {creates} (one per user: {creates == USERS})")
    finally:
        stop(procs, timeout=20)
        for host in hosts:
            await host.stop()
        # Forget the stand-in fleet, or the next run would evacuate its
        # assistants from the vanished fake hosts onto real ones.
        # CASCADE: the rows that hang off them too (proxy credentials).
        await pool.execute("TRUNCATE assistants, provisioning_jobs, hosts CASCADE")
        await pool.close()
        await nc.drain()


async def _spare_ready(data_dir: Path, timeout: float = 120) -> None:
    """Until a warm spare of the host admits traffic (users arrive spaced out)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            marks = await asyncio.to_thread(
                lambda: [
                    m.read_text() for m in data_dir.glob(".slots/*/run/spare.json")
                ]
            )
            for mark in marks:
                with suppress(ValueError, KeyError, httpx.HTTPError):
                    port = json.loads(mark)["port"]
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).is_success:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError("no warm spare came up")


async def real_openclaw(
    nats_url: str,
    database_url: str,
    base_env: dict[str, str],
    tmp: Path,
    *,
    warm_pool: int,
) -> None:
    try:
        from yourclaw_devkit.devsim import DevsimSettings, running_devsim
        from yourclaw_host_agent.app import run as run_host_agent
        from yourclaw_host_agent.install_openclaw import (
            DEFAULT_OPENCLAW_HOME,
            installed_version,
        )
        from yourclaw_host_agent.settings import HostAgentSettings
    except ImportError as exc:
        print(f"\nReal OpenClaw: skipped (host-agent not importable: {exc})")
        return
    openclaw_dir = (REPO / DEFAULT_OPENCLAW_HOME).resolve()
    if installed_version(openclaw_dir) is None:
        print(f"\nReal OpenClaw: skipped (openclaw not installed in {openclaw_dir})")
        return

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    pool = await create_pool(database_url, max_size=2)
    watch = ReadyWatch()
    await nc.subscribe("assistant.ready", cb=watch.on_ready)
    stop = asyncio.Event()
    settings = HostAgentSettings(
        _env_file=None,
        nats_url=nats_url,
        database_url=database_url,
        host_runtime="process",
        yourclaw_env="dev",
        host_id=f"bench-real-{warm_pool}",
        host_capacity=REAL_USERS,
        host_heartbeat_seconds=1,
        host_data_dir=tmp / f"host-{warm_pool}",
        openclaw_install_dir=openclaw_dir,
        warm_pool_size=warm_pool,
        log_level="WARNING",
    )
    agent = asyncio.create_task(run_host_agent(settings, stop))
    async with running_devsim(
        DevsimSettings(_env_file=None, devsim_status_callbacks=False)
    ) as devsim_url:
        procs = _start_provisioners({**base_env, "DEV_LLM_BASE_URL": devsim_url}, 1)
        users: list[uuid.UUID] = []
        try:
            await _hosts_known(pool, 1)
            await asyncio.sleep(2)
            users = await _new_users(pool, REAL_USERS)
            latencies = []
            started = time.perf_counter()
            for user_id in users:
                if warm_pool:
                    await _spare_ready(settings.data_dir)
                sent = time.perf_counter()
                await publish(js, AssistantProvisionRequested(user_id=user_id))
                await watch.wait_for([user_id], timeout=300)
                latencies.append(watch.at[user_id] - sent)
            how = (
                f"warm pool of {warm_pool}, each user once a spare is up"
                if warm_pool
                else "no warm pool: every gateway boots"
            )
            _report(
                f"Real OpenClaw gateways (process runtime): {REAL_USERS} users, "
                f"one after another, {how}",
                latencies,
                time.perf_counter() - started,
            )
        finally:
            for user_id in users:
                await publish(js, AssistantDeprovisionRequested(user_id=user_id))

            async def removed() -> bool:
                return not await pool.fetchval(
                    "SELECT count(*) FROM assistants WHERE host_id IS NOT NULL"
                )

            with suppress(AssertionError):
                await eventually(removed, timeout=120, interval=0.5)
            stop(procs, timeout=20)
            stop.set()
            await agent
            await pool.close()
            await nc.drain()


def main() -> None:
    with bench_infra("yourclaw-bench-prov-", "yourclaw_bench_provisioning") as bench:
        tmp, infra = bench
        env = provisioner_env(infra)
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
        asyncio.run(stand_in(infra.operator_url, infra.database_url, env))
        if REAL_USERS > 0:
            # The baseline (cold boots) and the warm pool, in the same run.
            for warm in (0, 1):
                asyncio.run(
                    real_openclaw(
                        infra.operator_url, infra.database_url, env, tmp, warm_pool=warm
                    )
                )


if __name__ == "__main__":
    main()
