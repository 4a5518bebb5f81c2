"""Provisioning faults against a real host-agent process (issue 4, "Fault tests").

The host-agent (`python -m yourclaw_host_agent`, process runtime) is SIGKILLed
while a create is in flight: its gateway keeps running as an orphan, the
provisioner's attempt fails, and once a new agent for the same host and data
dir is up the job retries and completes, with one gateway for the user, not two.
Frozen (SIGSTOP) instead, the host is only suspect: the same gateway serves on
and a remove sent meanwhile is refused as expired when the agent wakes (issue 17).

The gateway is a stand-in (an HTTP server serving /healthz and /readyz), installed where
the agent looks for OpenClaw (`OPENCLAW_INSTALL_DIR`), so the agent runs
unmodified: `node <dir>/node_modules/openclaw/openclaw.mjs gateway --port …`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    AssistantProvisionRequested,
    HostReply,
    HostVerb,
    ListContainers,
    NamedContainer,
    container_name,
    host_command,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, returned_within, subscribed_user
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION
from yourclaw_provisioner.app import run as run_provisioner
from yourclaw_provisioner.errors import HostCommandFailed
from yourclaw_provisioner.hosts import HostClient
from yourclaw_provisioner.settings import ProvisionerSettings

from .conftest import gateway_ports

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PHONE = "+15557770404"
# The stand-in gateway listens this long after it starts, so the agent can be
# killed while the provisioner still waits for the create to become healthy.
GATEWAY_DELAY_SECONDS = 2.0

FAKE_OPENCLAW = """\
import fs from "node:fs";
import http from "node:http";

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1]);
const delayFile = new URL("./delay", import.meta.url);
const delay = fs.existsSync(delayFile) ? Number(fs.readFileSync(delayFile, "utf8")) : 0;
console.log(`[gateway] starting pid=${process.pid} port=${port}`);
process.on("SIGTERM", () => process.exit(0));
setTimeout(() => {
  http
    .createServer((req, res) => {
      const ok = req.url === "/healthz" || req.url === "/readyz";
      res.writeHead(ok ? 200 : 404, { "Content-Type": "application/json" });
      res.end(ok ? '{"ok":true,"status":"live"}' : "{}");
    })
    .listen(port, "127.0.0.1", () => console.log("[gateway] ready"));
}, delay * 1000);
"""


def fake_openclaw_install(home: Path) -> Path:
    """An install dir the agent takes for the pinned openclaw; returns the CLI."""
    package = home / "node_modules" / "openclaw"
    package.mkdir(parents=True)
    (package / "package.json").write_text(
        json.dumps({"name": "openclaw", "version": OPENCLAW_VERSION, "type": "module"})
    )
    (home / ".installed").write_text(OPENCLAW_VERSION)
    (package / "delay").write_text(str(GATEWAY_DELAY_SECONDS))
    entry = package / "openclaw.mjs"
    entry.write_text(FAKE_OPENCLAW)
    return entry


def gateways(entry: Path) -> list[psutil.Process]:
    """Every live stand-in gateway process of this test (by its CLI path)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if str(entry) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


class Host:
    """One host id and data dir, served by host-agent subprocesses in turn."""

    def __init__(self, nc, env: dict[str, str], tmp: Path):
        self.nc = nc
        self.host_id = f"fault-{uuid.uuid4().hex[:8]}"
        self.data_dir = tmp / "host"
        self.entry = fake_openclaw_install(tmp / "openclaw")
        self.tmp = tmp
        self.env = {
            **os.environ,
            **env,
            "SERVICE_NAME": "host-agent",
            "HOST_ID": self.host_id,
            "HOST_RUNTIME": "process",
            "YOURCLAW_ENV": "dev",
            "HOST_DATA_DIR": str(self.data_dir),
            "HOST_HEARTBEAT_SECONDS": "0.3",
            "HOST_CAPACITY": "2",
            "OPENCLAW_INSTALL_DIR": str(self.entry.parents[2]),
            "GATEWAY_STOP_TIMEOUT_SECONDS": "5",
        }
        self.agents: list[subprocess.Popen[bytes]] = []

    def _spawn_agent(self) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"agent-{len(self.agents)}.log", "ab") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "yourclaw_host_agent"],
                env={**self.env, "METRICS_PORT": str(free_port())},
                # Away from the repo's .env.
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.agents.append(agent)
        return agent

    async def start_agent(self) -> subprocess.Popen[bytes]:
        agent = self._spawn_agent()

        async def answers():
            if agent.poll() is not None:
                raise AssertionError(f"host-agent exited {agent.returncode}")
            try:
                await self.request(HostVerb.LIST, ListContainers(), timeout=0.5)
            except Exception:
                return False
            return True

        await eventually(answers, timeout=30, interval=0.1)
        return agent

    async def request(self, verb: HostVerb, command: Any, *, timeout=10.0):
        msg = await self.nc.request(
            host_command(self.host_id, verb),
            command.model_dump_json().encode(),
            timeout=timeout,
        )
        return HostReply.model_validate_json(msg.data)

    async def containers(self) -> dict[str, Any]:
        reply = await self.request(HostVerb.LIST, ListContainers())
        assert reply.ok, reply
        return {c.name: c for c in reply.containers}

    def log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("agent-*.log")))


@pytest_asyncio.fixture(loop_scope="session")
async def host(service_env, nats_client, tmp_path) -> AsyncIterator[Host]:
    host = Host(nats_client, service_env, tmp_path)
    try:
        yield host
    finally:
        # Remove through a live agent, then stop the agents; kill what is left.
        with contextlib.suppress(Exception):
            for name in await host.containers():
                await host.request(
                    HostVerb.REMOVE, NamedContainer(name=name), timeout=15
                )
        for agent in host.agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for agent in host.agents:
            try:
                await asyncio.to_thread(agent.wait, 15)
            except subprocess.TimeoutExpired:
                agent.kill()
                await asyncio.to_thread(agent.wait)
        for proc in gateways(host.entry):
            with contextlib.suppress(psutil.Error):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest_asyncio.fixture(loop_scope="session")
async def provisioner(service_env, clean_db) -> AsyncIterator[None]:
    env = {k.lower(): v for k, v in service_env.items()}
    settings = ProvisionerSettings(
        _env_file=None,
        **env,
        service_name="provisioner",
        # Ports of its own: another worker's gateway on the default range's
        # first port would fail the first create and count a second attempt.
        **gateway_ports(),
        host_heartbeat_timeout_seconds=3,
        host_evacuate_after_seconds=600,
        host_command_timeout_seconds=2,
        host_create_timeout_seconds=5,
        gateway_health_timeout_seconds=4,
        provision_max_attempts=8,
        provision_retry_base_seconds=0.2,
        provision_job_lease_seconds=5,
        provision_poll_interval_seconds=0.2,
        reconcile_interval_seconds=0.5,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_provisioner(settings, stop))
    await asyncio.sleep(0.3)
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await returned_within(task)


async def job_of(pool, user_id):
    return await pool.fetchrow(
        "SELECT * FROM provisioning_jobs WHERE user_id = $1 ORDER BY created_at",
        user_id,
    )


class TestHostAgentKilledDuringCreate:
    @pytest.mark.parametrize("kill_when", ["create_received", "gateway_spawned"])
    async def test_job_retries_and_completes_without_duplicate(
        self, host, provisioner, clean_db, nats_client, kill_when
    ):
        first_agent = await host.start_agent()

        async def host_known():
            return await clean_db.fetchval(
                "SELECT count(*) FROM hosts WHERE id = $1", host.host_id
            )

        await eventually(host_known, timeout=30, message="host recorded")

        user_id = await subscribed_user(clean_db, phone=PHONE)
        name = container_name(user_id)
        pid_file = host.data_dir / str(user_id) / "run" / "gateway.pid"

        # The test sees the create request as the agent does (not in its queue
        # group): kill the agent as it gets it, before it can answer.
        async def on_create(msg):
            if kill_when == "create_received" and first_agent.poll() is None:
                first_agent.send_signal(signal.SIGKILL)

        sub = await nats_client.subscribe(
            host_command(host.host_id, HostVerb.CREATE), cb=on_create
        )
        await nats_client.flush()
        await publish(
            nats_client.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )

        if kill_when == "gateway_spawned":
            # The gateway was spawned but is not healthy yet (it listens after
            # GATEWAY_DELAY_SECONDS): the provisioner still waits on the agent.
            async def spawned():
                return pid_file.exists()

            await eventually(
                spawned, timeout=30, interval=0.01, message="gateway spawned"
            )
            first_agent.send_signal(signal.SIGKILL)
        await asyncio.wait_for(asyncio.to_thread(first_agent.wait), 30)
        await sub.unsubscribe()
        assert first_agent.returncode == -signal.SIGKILL
        job = await job_of(clean_db, user_id)
        assert job["status"] == "RUNNING", dict(job)
        # At most the one gateway the dead agent may have spawned (an orphan).
        assert len(gateways(host.entry)) <= 1

        # The provisioner's attempt fails while no agent serves the host.
        async def attempt_failed():
            row = await job_of(clean_db, user_id)
            return row["last_error"] is not None

        await eventually(attempt_failed, timeout=30, message="attempt 1 failed")

        await host.start_agent()

        async def ready():
            row = await clean_db.fetchrow(
                "SELECT * FROM assistants WHERE user_id = $1", user_id
            )
            if row is not None and row["status"] == "ERROR":
                raise AssertionError(f"provisioning failed: {row['last_error']}")
            return row if row is not None and row["status"] == "READY" else None

        try:
            assistant = await eventually(ready, timeout=60, interval=0.1)
        except AssertionError as exc:
            job = await job_of(clean_db, user_id)
            raise AssertionError(
                f"{exc}; job {dict(job)}\n--- agents ---\n{host.log()}"
            ) from None

        job = await job_of(clean_db, user_id)
        assert job["status"] == "COMPLETED", dict(job)
        assert job["attempts"] >= 2, dict(job)
        assert assistant["host_id"] == host.host_id
        port = assistant["port"]

        # One gateway for the user: the agent's view…
        containers = await host.containers()
        assert list(containers) == [name]
        assert containers[name].state == "running"
        assert containers[name].port == port
        # …and the processes on the host.
        procs = gateways(host.entry)
        assert len(procs) == 1, [p.cmdline() for p in procs]
        gateway = procs[0]
        assert gateway.cmdline()[-4:] == ["--port", str(port), "--bind", "loopback"]
        assert Path(gateway.cwd()) == (host.data_dir / str(user_id) / "workspace")
        # It alone listens on its address (a test running beside this one may
        # hold the same port number on another address, as on ::1).
        listening = [
            c
            for c in psutil.net_connections("tcp4")
            if c.laddr == ("127.0.0.1", port) and c.status == psutil.CONN_LISTEN
        ]
        assert {c.pid for c in listening} <= {gateway.pid, None}

        health = await host.request(
            HostVerb.HEALTH, NamedContainer(name=name, wait_seconds=5)
        )
        assert health.ok, health
        assert health.container is not None
        assert health.container.healthy


class TestHostAgentFrozen:
    async def test_a_frozen_agent_keeps_its_gateway_and_refuses_what_came_meanwhile(
        self, host, provisioner, clean_db, nats_client
    ):
        # Issue 17: the host-agent down (here frozen: SIGSTOP, a partition
        # without a restart) made its host "lost", and a remove buffered
        # meanwhile ran when it came back. Now the host is suspect only, and
        # the late remove is refused.
        agent = await host.start_agent()

        async def host_status():
            return await clean_db.fetchval(
                "SELECT status FROM hosts WHERE id = $1", host.host_id
            )

        await eventually(host_status, timeout=30, message="host recorded")
        user_id = await subscribed_user(clean_db, phone=PHONE)
        name = container_name(user_id)
        await publish(
            nats_client.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )

        async def ready():
            return await clean_db.fetchrow(
                "SELECT * FROM assistants WHERE user_id = $1 AND status = 'READY'",
                user_id,
            )

        before = await eventually(ready, timeout=60, message="assistant READY")
        (gateway,) = gateways(host.entry)
        generations = json.loads((host.data_dir / ".generations.json").read_text())
        assert generations == {name: before["generation"]}

        agent.send_signal(signal.SIGSTOP)
        try:

            async def suspect():
                return await host_status() == "OFFLINE"

            await eventually(suspect, timeout=30, message="host OFFLINE")
            # A remove sent while the agent cannot answer; its sender gives up.
            client = HostClient(nats_client, command_timeout=1, create_timeout=1)
            with pytest.raises(HostCommandFailed) as timed_out:
                await client.remove(host.host_id, name)
            assert timed_out.value.code == "HOST_TIMEOUT"
        finally:
            agent.send_signal(signal.SIGCONT)

        async def back():
            row = await clean_db.fetchrow(
                "SELECT * FROM assistants WHERE user_id = $1", user_id
            )
            return await host_status() == "ACTIVE" and row["last_error"] is None

        await eventually(back, timeout=30, message="host ACTIVE, flag cleared")
        # Reconcile passes with the host back.
        await asyncio.sleep(2)

        # The same gateway serves on; the late remove was refused, not run.
        assert [p.pid for p in gateways(host.entry)] == [gateway.pid]
        containers = await host.containers()
        assert containers[name].state == "running"
        assert "COMMAND_EXPIRED" in host.log()
        after = await clean_db.fetchrow(
            "SELECT * FROM assistants WHERE user_id = $1", user_id
        )
        assert (after["status"], after["host_id"], after["generation"]) == (
            "READY",
            host.host_id,
            before["generation"],
        )
        assert (await job_of(clean_db, user_id))["attempts"] == 1
