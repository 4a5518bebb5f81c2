"""The host-agent run as deploy/host-agent's systemd unit runs it: not root,
a user in the `docker` group holding only the unit's ambient capabilities
(read from the unit file itself). Under those it must do all root did in the
other container tests: put the tenant firewall up, hand a new tenant its
files (uid 1000, so the gateway boots and writes its workspace), and deep
sleep: move an idle gateway's memory to swap and read it back as a request
thaws it. Without one of those capabilities a step fails here, or the agent
logs that it fell back (a stop instead of a swap, pages faulted in one by one).
"""

from __future__ import annotations

import asyncio
import grp
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from yourclaw_common.embedded import free_port
from yourclaw_common.events import Subject
from yourclaw_common.testing import eventually
from yourclaw_host_agent.firewall import Firewall, TenantFirewallPlan
from yourclaw_host_agent.settings import HostAgentSettings

from .test_containers import IMAGE, docker, engine, inspect  # noqa: F401
from .test_sleep_containers import (  # noqa: F401
    _Agent,
    _Beats,
    _depth,
    _tenant,
    _used_mib,
    host_swap,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

UNIT = (
    Path(__file__).resolve().parents[1]
    / "deploy/host-agent/yourclaw-host-agent.service"
)
# A user the agent runs as, as `useradd --system` would give: no one else's.
AGENT_UID = 64_917
# What the agent must never have to log under the unit's privileges.
FALLBACKS = ("host_agent.swap.denied", "host_agent.sleep.failed")


def unit_capabilities() -> list[str]:
    """The unit's AmbientCapabilities, as setpriv names them (`net_admin`)."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("AmbientCapabilities="):
            caps = line.split("=", 1)[1].split()
            return [c.removeprefix("CAP_").lower() for c in caps]
    raise AssertionError(f"{UNIT.name} grants no capabilities")


class _UnitAgent(_Agent):
    """`python -m yourclaw_host_agent serve` under setpriv, as the unit starts it."""

    def __init__(self, settings: HostAgentSettings, nc: Any, log: Path):
        self.settings = settings
        self.nc = nc
        caps = ",".join(f"+{c}" for c in unit_capabilities())
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(settings.host_data_dir),
            "SERVICE_NAME": "host-agent",
            "NATS_URL": settings.nats_url,
            "HOST_ID": settings.host_id,
            "HOST_RUNTIME": "docker",
            "HOST_DATA_DIR": str(settings.host_data_dir),
            "HOST_HEARTBEAT_SECONDS": str(settings.host_heartbeat_seconds),
            "TENANT_NETWORK": settings.tenant_network,
            "TENANT_BRIDGE": settings.tenant_bridge,
            "OPENCLAW_IMAGE": settings.openclaw_image,
            "METRICS_PORT": str(settings.metrics_port),
            "IDLE_SUSPEND_AFTER_SECONDS": str(settings.idle_suspend_after_seconds),
            "IDLE_STOP_AFTER_SECONDS": str(settings.idle_stop_after_seconds),
            "HOST_SWAP_RESERVE_MB": str(settings.host_swap_reserve_mb),
        }
        # No --init-groups: this user has no passwd entry, only its docker group.
        command = [
            "setpriv",
            f"--reuid={AGENT_UID}",
            f"--regid={AGENT_UID}",
            f"--groups={grp.getgrnam('docker').gr_gid}",
            f"--inh-caps=-all,{caps}",
            f"--ambient-caps=-all,{caps}",
            f"--bounding-set=-all,{caps}",
            "--no-new-privs",
            "--",
            sys.executable,
            "-m",
            "yourclaw_host_agent",
            "serve",
        ]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                command, env=env, cwd=settings.host_data_dir, stdout=out, stderr=out
            )

    async def shutdown(self) -> None:
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 60)


@pytest.fixture
def agent_user() -> None:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to drop to the unit's user")
    try:
        grp.getgrnam("docker")
    except KeyError:
        pytest.skip("no docker group: the engine's socket is root's alone")


async def _metric(port: int, line: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return False
    return line in text.splitlines()


@pytest.mark.usefixtures("engine", "host_swap", "agent_user")
async def test_the_units_privileges_run_a_firewalled_tenant_and_deep_sleep(
    nats_url, tmp_path: Path
):
    tag = uuid.uuid4().hex[:6]
    data_dir = (tmp_path / "host").resolve()
    # As bootstrap makes it: the agent's own, closed to others.
    data_dir.mkdir(mode=0o750)
    os.chown(data_dir, AGENT_UID, AGENT_UID)
    log = tmp_path / "agent.log"
    metrics_port = free_port()

    def settings(**more: Any) -> HostAgentSettings:
        return HostAgentSettings(
            _env_file=None,  # type: ignore[call-arg]
            nats_url=nats_url,
            host_id=f"u{tag}",
            host_data_dir=data_dir,
            host_heartbeat_seconds=0.5,
            tenant_network=f"yourclaw-unit-{tag}",
            tenant_bridge=f"ycu{tag}",
            openclaw_image=IMAGE,
            metrics_port=metrics_port,
            host_swap_reserve_mb=64,
            **more,
        )

    spec = _tenant()
    name = spec.name
    firewall = Firewall(TenantFirewallPlan(bridge=f"ycu{tag}"))
    nc = await nats.connect(nats_url)
    beats = _Beats()
    await nc.subscribe(f"{Subject.HOST_HEARTBEAT.value}.u{tag}", cb=beats.on_beat)
    agent = _UnitAgent(settings(), nc, log)
    try:
        # The gateway boots: its files are uid 1000's, and it wrote its own.
        await agent.create(spec)
        workspace = data_dir / str(spec.user_id) / "workspace"
        assert workspace.stat().st_uid == 1000
        docker("exec", "-u", "1000:1000", name, "touch", "/home/node/.openclaw/w")
        # Its bridge is behind the firewall the agent put up.
        rules = await firewall.listing()
        assert "-j DROP" in rules or "-j REJECT" in rules, rules
        pid = inspect(name)["State"]["Pid"]
        awake_mib = _used_mib(name)

        # Idle: frozen, then swapped (not stopped), by the unit's agent.
        await agent.shutdown()
        beats.forget()
        agent = _UnitAgent(
            settings(idle_suspend_after_seconds=1, idle_stop_after_seconds=3),
            nc,
            log,
        )
        await beats.until(_depth(name, "frozen"))
        swapped = (
            'yourclaw_host_agent_suspensions_total{depth="swapped",reason="idle"} 1.0'
        )
        await eventually(lambda: _metric(metrics_port, swapped), timeout=60)
        state = inspect(name)["State"]
        assert (state["Paused"], state["Pid"]) == (True, pid)
        assert _used_mib(name) < awake_mib / 2

        # Restarted at the default idle times, the agent knows it for swapped;
        # a request thaws it, and its memory is read back in bulk.
        await agent.shutdown()
        beats.forget()
        agent = _UnitAgent(settings(), nc, log)
        adopted = 'yourclaw_host_agent_gateways_suspended{depth="swapped"} 1.0'
        await eventually(lambda: _metric(metrics_port, adopted), timeout=60)
        async with httpx.AsyncClient(timeout=60) as http:
            answer = await http.get(f"http://127.0.0.1:{spec.port}/readyz")
        assert answer.status_code == 200
        assert inspect(name)["State"]["Pid"] == pid

        async def back_in_memory() -> bool:
            return _used_mib(name) > awake_mib / 2

        await eventually(back_in_memory, timeout=30, interval=0.5)
        text = log.read_text()
        assert not [f for f in FALLBACKS if f in text], text[-3000:]
    finally:
        if agent.proc.poll() is None:
            await agent.shutdown()
        docker("rm", "-f", name, check=False)
        await firewall.remove()
        docker("network", "rm", f"yourclaw-unit-{tag}", check=False)
        await nc.close()
