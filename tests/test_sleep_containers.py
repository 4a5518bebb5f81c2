"""Sleeping assistants on the real Docker Engine: a tenant frozen (docker
pause) and stopped by its host-agent, adopted as a sleeper by a restarted
agent, thawed by a request that reaches it frozen, and woken by the `wake`
verb (two gateway boots). And deep sleep: a long-idle tenant stays frozen
with its memory moved to the host's swap (its RAM given back), and a request
thaws it: the same process answers, no boot. That needs swap on the host; a
host without enough gets a swap file for the test when the tests run as root
(removed after, `yourclaw_devkit.swapfile`), otherwise it is skipped.

The tenant's firewall is off here (tenancy has its own tests in
test_containers.py); the gateway needs no LLM, nothing chats.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from prometheus_client import REGISTRY
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    ContainerSpec,
    CreateContainer,
    HostHeartbeat,
    HostReply,
    HostVerb,
    Subject,
    container_name,
    host_command,
)
from yourclaw_common.testing import eventually
from yourclaw_devkit import swapfile
from yourclaw_host_agent.app import run as run_host_agent
from yourclaw_host_agent.settings import HostAgentSettings

from .test_containers import IMAGE, docker, engine, inspect  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

BOOT_SECONDS = 180


def _config(token: str) -> str:
    return json.dumps(
        {
            "gateway": {
                "mode": "local",
                "port": 18789,
                "auth": {"mode": "token", "token": token},
            },
        }
    )


def _tenant(token: str | None = None) -> ContainerSpec:
    """A new user's gateway (its own port, `token` its gateway token)."""
    user_id = uuid.uuid4()
    return ContainerSpec(
        user_id=user_id,
        name=container_name(user_id),
        port=free_port(),
        image=IMAGE,
        files={"config/openclaw.json": _config(token or uuid.uuid4().hex)},
        spec_hash="s1",
    )


class _Agent:
    def __init__(self, settings: HostAgentSettings, nc: Any):
        self.settings = settings
        self.nc = nc
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_host_agent(settings, self.stop))

    async def request(
        self, verb: HostVerb, payload: dict[str, Any], timeout: float = 60
    ) -> HostReply:
        for _ in range(300):
            try:
                msg = await self.nc.request(
                    host_command(self.settings.host_id, verb),
                    json.dumps(payload).encode(),
                    timeout=timeout,
                )
                return HostReply.model_validate_json(msg.data)
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.1)  # still starting
        raise TimeoutError(f"no host-agent answers {verb}")

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 60)

    async def create(self, spec: ContainerSpec) -> None:
        """Create `spec` and wait until its gateway answers."""
        created = await self.request(
            HostVerb.CREATE, json.loads(CreateContainer(spec=spec).model_dump_json())
        )
        assert created.ok, created
        health = await self.request(
            HostVerb.HEALTH,
            {"name": spec.name, "wait_seconds": BOOT_SECONDS},
            timeout=BOOT_SECONDS + 30,
        )
        assert health.container.healthy is True, docker("logs", spec.name)


class _Beats:
    """The host's heartbeats as they come; `forget()` after an agent restart."""

    def __init__(self) -> None:
        self.latest: HostHeartbeat | None = None

    async def on_beat(self, msg: Any) -> None:
        self.latest = HostHeartbeat.model_validate_json(msg.data)

    def forget(self) -> None:
        self.latest = None

    async def until(self, where: Any, timeout: float = 60) -> HostHeartbeat:
        async def matching() -> HostHeartbeat | None:
            beat = self.latest
            return beat if beat is not None and where(beat) else None

        return await eventually(matching, timeout=timeout, interval=0.1)


def _settings(
    nats_url: str, tmp_path: Path, tag: str, **more: Any
) -> HostAgentSettings:
    """A host-agent of its own (host id, tenant network and bridge named by
    `tag`) on the docker runtime, its tenants' firewall off."""
    return HostAgentSettings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=nats_url,
        host_id=f"d{tag}",
        host_runtime="docker",
        host_data_dir=(tmp_path / "host").resolve(),
        host_heartbeat_seconds=0.5,
        tenant_network=f"yourclaw-sleep-{tag}",
        tenant_bridge=f"yc{tag}",
        tenant_firewall=False,
        openclaw_image=IMAGE,
        **more,
    )


def _depth(name: str, depth: str | None):
    return lambda beat: any(
        c.name == name and c.sleeping == depth for c in beat.containers
    )


@pytest.mark.usefixtures("engine")
async def test_a_tenant_sleeps_is_adopted_asleep_and_wakes(nats_url, tmp_path: Path):
    suffix = uuid.uuid4().hex[:6]

    def settings(**more: Any) -> HostAgentSettings:
        return _settings(nats_url, tmp_path, f"s{suffix}", **more)

    token = uuid.uuid4().hex
    spec = _tenant(token)
    name = spec.name
    nc = await nats.connect(nats_url)
    beats = _Beats()
    await nc.subscribe(f"{Subject.HOST_HEARTBEAT.value}.ds{suffix}", cb=beats.on_beat)
    agent = _Agent(settings(), nc)

    def mark(step: str, since: float) -> None:  # shown with -s
        sys.stderr.write(f"{step}: {time.monotonic() - since:.2f} s\n")

    try:
        await agent.create(spec)

        # A reminder set with OpenClaw's CLI (as its automations tool does):
        # the heartbeat names its due time, read from OpenClaw's own cron
        # store, and not that of OpenClaw's half-hourly heartbeat job.
        out = docker(
            "exec", "-u", "1000:1000", name,
            "node", "dist/index.js", "cron", "add",
            "--at", "7200s", "--command", "echo reminder", "--name", "reminder",
            "--no-deliver", "--token", token, "--url", "ws://127.0.0.1:18789",
        )  # fmt: skip
        due = int(json.loads(out[out.index("{") :])["nextRunAtMs"]) // 1000
        beat = await beats.until(lambda b: any(c.next_wake_at for c in b.containers))
        assert [c.next_wake_at for c in beat.containers] == [due]

        # Frozen: the engine's own state, which a restarted agent adopts.
        suspended = await agent.request(HostVerb.SUSPEND, {"name": name})
        assert suspended.container.state == "paused", suspended
        assert inspect(name)["State"]["Paused"] is True
        await agent.shutdown()
        beats.forget()
        agent = _Agent(settings(), nc)
        beat = await beats.until(_depth(name, "frozen"))
        assert (beat.awake, beat.asleep) == (0, 1)

        # Neither the engine's health checks (every 5 s) nor the agent's own
        # knock: two intervals later it still sleeps. A request that reaches
        # it does: the agent thaws it and the gateway answers.
        await asyncio.sleep(11)
        assert inspect(name)["State"]["Paused"] is True
        async with httpx.AsyncClient(timeout=30) as http:
            knock = await http.get(f"http://127.0.0.1:{spec.port}/readyz")
        assert knock.status_code == 200
        assert inspect(name)["State"]["Paused"] is False
        await beats.until(_depth(name, None))
        suspended = await agent.request(HostVerb.SUSPEND, {"name": name})
        assert suspended.container.state == "paused", suspended

        started = time.monotonic()
        woken = await agent.request(HostVerb.WAKE, {"name": name, "wait_seconds": 30})
        mark("wake from frozen", started)
        assert woken.container.healthy is True, woken
        assert inspect(name)["State"]["Paused"] is False

        # Idle: frozen, then stopped (memory freed); a restarted agent still
        # knows it for a sleeper, and wakes it.
        await agent.shutdown()
        beats.forget()
        # (Without deep sleep on swap: the next test has that.)
        agent = _Agent(
            settings(
                idle_suspend_after_seconds=1,
                idle_stop_after_seconds=3,
                swap_sleepers=False,
            ),
            nc,
        )
        await beats.until(_depth(name, "stopped"))
        assert inspect(name)["State"]["Running"] is False
        await agent.shutdown()
        beats.forget()
        agent = _Agent(settings(), nc)
        beat = await beats.until(lambda b: bool(b.containers))
        assert beat.containers[0].sleeping == "stopped"
        started = time.monotonic()
        woken = await agent.request(
            HostVerb.WAKE,
            {"name": name, "wait_seconds": BOOT_SECONDS},
            timeout=BOOT_SECONDS + 30,
        )
        mark("wake from stopped", started)
        assert woken.ok, woken
        assert woken.container.healthy is True, docker("logs", name)
        await beats.until(_depth(name, None))

        # A frozen tenant is removed like any other.
        assert (await agent.request(HostVerb.SUSPEND, {"name": name})).ok
        removed = await agent.request(HostVerb.REMOVE, {"name": name})
        assert removed.ok, removed
        assert docker("ps", "-aq", "--filter", f"name=^{name}$") == ""
    finally:
        if not agent.task.done():
            await agent.shutdown()
        docker("rm", "-f", name, check=False)
        docker("network", "rm", f"yourclaw-sleep-s{suffix}", check=False)
        await nc.close()


# --- deep sleep: swapped -----------------------------------------------------

SWAP_FILE_MB = 3072
MIB = 1024 * 1024


@pytest.fixture
def host_swap() -> Iterator[None]:
    """Swap on the host: what it has, else a file of our own for the test."""
    folder = Path(__file__).resolve().parents[1] / ".data"
    try:
        with swapfile.host_swap(SWAP_FILE_MB, folder):
            yield
    except swapfile.SwapUnavailable as exc:
        pytest.skip(str(exc))


def _used_mib(name: str) -> float:
    """The container's memory in use as `docker stats` shows an operator."""
    used = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name)
    amount = used.split("/")[0].strip()
    for unit, factor in (
        ("GiB", 1024.0),
        ("MiB", 1.0),
        ("KiB", 1 / 1024),
        ("B", 1 / 1048576),
    ):
        if amount.endswith(unit):
            return float(amount.removesuffix(unit)) * factor
    raise AssertionError(f"unreadable docker stats: {used}")


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.usefixtures("engine", "host_swap")
async def test_a_long_idle_tenant_is_swapped_out_and_a_request_thaws_it(
    nats_url, tmp_path: Path
):
    suffix = uuid.uuid4().hex[:6]

    def settings(**more: Any) -> HostAgentSettings:
        return _settings(
            nats_url, tmp_path, f"w{suffix}", host_swap_reserve_mb=64, **more
        )

    spec = _tenant()
    name = spec.name
    nc = await nats.connect(nats_url)
    beats = _Beats()
    await nc.subscribe(f"{Subject.HOST_HEARTBEAT.value}.dw{suffix}", cb=beats.on_beat)
    agent = _Agent(settings(), nc)
    try:
        await agent.create(spec)
        pid = inspect(name)["State"]["Pid"]
        awake_mib = _used_mib(name)
        limits = {k: inspect(name)["HostConfig"][k] for k in ("Memory", "MemorySwap")}

        # Idle past both times: frozen, then its memory goes to swap; it is
        # not stopped (the same process, still paused).
        await agent.shutdown()
        beats.forget()
        swapped_before = _sample(
            "yourclaw_host_agent_suspensions_total", depth="swapped", reason="idle"
        )
        agent = _Agent(
            settings(idle_suspend_after_seconds=1, idle_stop_after_seconds=3), nc
        )
        await beats.until(_depth(name, "frozen"))
        for _ in range(600):
            moved = _sample(
                "yourclaw_host_agent_suspensions_total", depth="swapped", reason="idle"
            )
            if moved > swapped_before:
                break
            await asyncio.sleep(0.1)
        assert moved == swapped_before + 1
        state = inspect(name)["State"]
        assert (state["Paused"], state["Pid"]) == (True, pid)
        asleep_mib = _used_mib(name)
        sys.stderr.write(
            f"memory awake {awake_mib:.0f} MiB, swapped {asleep_mib:.0f} MiB\n"
        )
        assert asleep_mib < awake_mib / 2
        # Its own limits are as they were: awake, it can neither swap nor grow.
        assert {
            k: inspect(name)["HostConfig"][k] for k in ("Memory", "MemorySwap")
        } == limits
        await beats.until(lambda b: b.containers and b.containers[0].sleeping)
        await asyncio.sleep(2)  # heartbeats go on: it stays swapped, not stopped
        assert inspect(name)["State"]["Paused"] is True

        # A restarted agent (the default idle times) knows it for swapped.
        await agent.shutdown()
        beats.forget()
        agent = _Agent(settings(), nc)
        await beats.until(lambda b: bool(b.containers))  # the new agent's

        async def adopted() -> bool:
            gauge = "yourclaw_host_agent_gateways_suspended"
            return _sample(gauge, depth="swapped") == 1

        await eventually(adopted, timeout=30, interval=0.2)

        # A request reaches it: thawed, and the same process answers.
        thawed_before = _sample(
            "yourclaw_host_agent_wakes_total", from_state="swapped", reason="request"
        )
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=60) as http:
            answer = await http.get(f"http://127.0.0.1:{spec.port}/readyz")
        sys.stderr.write(
            f"request to a swapped gateway: {time.monotonic() - started:.2f} s\n"
        )
        assert answer.status_code == 200
        state = inspect(name)["State"]
        assert (state["Paused"], state["Running"], state["Pid"]) == (False, True, pid)
        # Its memory came back in bulk with the thaw, not only the pages
        # that one request touched.

        async def back_in_memory() -> bool:
            return _used_mib(name) > awake_mib / 2

        await eventually(back_in_memory, timeout=30, interval=0.5)
        assert (
            _sample(
                "yourclaw_host_agent_wakes_total",
                from_state="swapped",
                reason="request",
            )
            == thawed_before + 1
        )
    finally:
        if not agent.task.done():
            await agent.shutdown()
        docker("rm", "-f", name, check=False)
        docker("network", "rm", f"yourclaw-sleep-w{suffix}", check=False)
        await nc.close()
