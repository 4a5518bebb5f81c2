"""The process runtime with the REAL OpenClaw gateway (slow: ~1.3 GB and ~10 s a boot).

One test walks the whole life of a gateway, so at most one runs at a time:
create → /healthz → a chat completion answered by the LLM stand-in → the agent
is SIGKILLed and restarted and re-adopts the gateway (no second process) →
a new spec replaces it, keeping the workspace → remove stops it all.
openclaw is installed by the project's installer when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    ContainerSpec,
    HostReply,
    HostVerb,
    container_name,
    host_command,
)
from yourclaw_host_agent.install_openclaw import DEFAULT_OPENCLAW_HOME, ensure_openclaw
from yourclaw_host_agent.layout import DataLayout
from yourclaw_host_agent.runtimes.process import ProcessRuntime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def openclaw_dir() -> Path:
    """The pinned openclaw, installed by our installer if missing (make test on a fresh clone)."""
    configured = os.environ.get("OPENCLAW_INSTALL_DIR")
    home = Path(configured) if configured else REPO / DEFAULT_OPENCLAW_HOME
    ensure_openclaw(home)
    return home.resolve()


def openclaw_config(token: str, llm_base_url: str) -> str:
    return json.dumps(
        {
            "agents": {"defaults": {"model": {"primary": "local/echo-1"}}},
            "models": {
                "mode": "merge",
                "providers": {
                    "local": {
                        "baseUrl": llm_base_url,
                        "apiKey": "x",
                        "api": "openai-completions",
                        "models": [
                            {
                                "id": "echo-1",
                                "name": "Echo",
                                "reasoning": False,
                                "input": ["text"],
                                "cost": {
                                    "input": 0,
                                    "output": 0,
                                    "cacheRead": 0,
                                    "cacheWrite": 0,
                                },
                                "contextWindow": 32000,
                                "maxTokens": 1024,
                            }
                        ],
                    }
                },
            },
            "gateway": {
                "mode": "local",
                # As the provisioner renders it (the container's port): the
                # process runtime's --port wins.
                "port": 18789,
                "auth": {"mode": "token", "token": token},
                "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            },
        }
    )


class AgentProcess:
    """`python -m yourclaw_host_agent` as its own process, as systemd runs it."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, nc) -> None:
        out = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "yourclaw_host_agent",
                env=self.env,
                stdout=out,
                stderr=out,
            )
        finally:
            os.close(out)
        for _ in range(600):
            assert self.proc.returncode is None, self.log.read_text()[-3000:]
            try:
                await nc.request(
                    host_command(self.env["HOST_ID"], HostVerb.LIST), b"{}", timeout=0.5
                )
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise TimeoutError(self.log.read_text()[-3000:])

    async def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


@pytest_asyncio.fixture(loop_scope="session")
async def agent_env(nats_url, tmp_path, openclaw_dir) -> AsyncIterator[dict[str, str]]:
    data = tmp_path / "data"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NATS_URL": nats_url,
        "HOST_ID": f"oc{uuid.uuid4().hex[:8]}",
        "HOST_DATA_DIR": str(data),
        "HOST_HEARTBEAT_SECONDS": "1",
        "HOST_RUNTIME": "process",
        "YOURCLAW_ENV": "dev",
        "OPENCLAW_INSTALL_DIR": str(openclaw_dir),
        "LOG_LEVEL": "INFO",
    }
    yield env
    # Whatever happened, no gateway outlives the test.
    runtime = ProcessRuntime(
        DataLayout(data.resolve()),
        openclaw_dir=openclaw_dir,
        install=False,
        stop_timeout=10,
    )
    for info in await runtime.list():
        await runtime.remove(info.name)
    await runtime.close()  # and any warm spare left behind


async def ask(
    nc, host_id: str, verb: HostVerb, payload: dict, timeout: float = 30
) -> HostReply:
    msg = await nc.request(
        host_command(host_id, verb),
        json.dumps(payload, default=str).encode(),
        timeout=timeout,
    )
    reply = HostReply.model_validate_json(msg.data)
    assert reply.ok, reply
    return reply


async def create(nc, host_id: str, spec: ContainerSpec) -> HostReply:
    """Ask for the gateway of `spec` (created, kept or replaced)."""
    payload = {"spec": spec.model_dump(mode="json")}
    return await ask(nc, host_id, HostVerb.CREATE, payload, timeout=60)


async def healthy(nc, host_id: str, name: str) -> None:
    """The gateway answers its health check within 90 s (its log if not)."""
    health = await ask(
        nc, host_id, HostVerb.HEALTH, {"name": name, "wait_seconds": 90}, timeout=100
    )
    assert health.container.healthy is True, (
        await ask(nc, host_id, HostVerb.LOGS, {"name": name})
    ).logs


def gateway_spec(
    user_id: uuid.UUID, port: int, token: str, devsim_url: str, **fields: Any
) -> ContainerSpec:
    """A user's gateway: their token, models from the LLM stand-in."""
    return ContainerSpec(
        user_id=user_id,
        name=container_name(user_id),
        port=port,
        files={
            "config/openclaw.json": openclaw_config(token, f"{devsim_url}/v1"),
            "workspace/CLAUDE.md": "You are a WhatsApp assistant. Be concise.\n",
        },
        spec_hash="v1",
        **fields,
    )


def gateway_leaders(port: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "gateway" in cmd and "--port" in cmd and str(port) in cmd:
            found.append(proc.info["pid"])
    return found


async def chat(port: int, token: str, text: str) -> str:
    async with httpx.AsyncClient(timeout=120) as http:
        resp = await http.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={
                "Authorization": f"Bearer {token}",
                "x-openclaw-session-key": "wa:test",
            },
            json={
                "model": "openclaw/default",
                "user": "wa:test",
                "messages": [{"role": "user", "content": text}],
            },
        )
    assert resp.status_code == 200, resp.text[:500]
    return str(resp.json()["choices"][0]["message"]["content"])


async def test_real_gateway_lifecycle(agent_env, host_nc, devsim_url, tmp_path):
    host_id = agent_env["HOST_ID"]
    data = Path(agent_env["HOST_DATA_DIR"])
    user_id = uuid.uuid4()
    name = container_name(user_id)
    port = free_port()
    token = secrets.token_urlsafe(24)
    spec = gateway_spec(user_id, port, token, devsim_url, env={"YOURCLAW_TEST": "1"})
    agent = AgentProcess(agent_env, tmp_path / "agent.log")
    started = time.monotonic()

    def mark(step: str) -> None:  # shown with -s, or when the test fails
        sys.stderr.write(f"[{time.monotonic() - started:6.1f}s] {step}\n")

    await agent.start(host_nc)
    mark("agent up")
    try:
        created = await create(host_nc, host_id, spec)
        assert created.container.state in ("starting", "running")
        await healthy(host_nc, host_id, name)

        mark("created and healthy")
        answer = await chat(port, token, "hello from the host-agent test")
        mark("first chat answered")
        # The stand-in echoes the user's text (OpenClaw may append its context).
        assert answer.startswith("Echo: hello from the host-agent test")
        async with httpx.AsyncClient() as http:
            wrong = await http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"Authorization": "Bearer wrong"},
                json={
                    "model": "openclaw/default",
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
        assert wrong.status_code == 401
        leaders = gateway_leaders(port)
        assert len(leaders) == 1

        # The agent dies hard; its gateway does not, and a new agent adopts it.
        await agent.kill()
        async with httpx.AsyncClient() as http:
            assert (
                await http.get(f"http://127.0.0.1:{port}/healthz")
            ).status_code == 200
        await agent.start(host_nc)
        mark("agent killed and restarted")
        listed = await ask(host_nc, host_id, HostVerb.LIST, {})
        assert [(c.name, c.state, c.port) for c in listed.containers] == [
            (name, "running", port)
        ]
        again = await create(host_nc, host_id, spec)
        assert again.container.state == "running"
        assert gateway_leaders(port) == leaders
        assert (await chat(port, token, "still there?")).startswith(
            "Echo: still there?"
        )

        # A new spec (e.g. another model) replaces the gateway, keeping the workspace.
        notes = data / str(user_id) / "workspace" / "notes.md"
        notes.write_text("remember the milk\n")
        new_token = secrets.token_urlsafe(24)
        replaced_spec = spec.model_copy(
            update={
                "spec_hash": "v2",
                "files": {
                    **spec.files,
                    "config/openclaw.json": openclaw_config(
                        new_token, f"{devsim_url}/v1"
                    ),
                },
            }
        )
        replaced = await create(host_nc, host_id, replaced_spec)
        assert replaced.container.spec_hash == "v2"
        mark("replaced")
        await healthy(host_nc, host_id, name)
        mark("replacement healthy")
        assert gateway_leaders(port) != leaders
        assert len(gateway_leaders(port)) == 1
        assert (await chat(port, new_token, "after the change")).startswith(
            "Echo: after the change"
        )
        assert notes.read_text() == "remember the milk\n"
        logs = await ask(host_nc, host_id, HostVerb.LOGS, {"name": name, "tail": 200})
        assert "[gateway]" in logs.logs
        assert token not in logs.logs
        assert new_token not in logs.logs

        removed = await ask(
            host_nc, host_id, HostVerb.REMOVE, {"name": name}, timeout=60
        )
        assert removed.container.state == "missing"
        mark("removed")
        assert gateway_leaders(port) == []
        assert notes.exists()
    finally:
        await agent.kill()
    agent_log = (tmp_path / "agent.log").read_text()
    assert "host_agent.gateway.adopted" in agent_log
    assert token not in agent_log
    assert new_token not in agent_log


async def test_real_spare_takes_a_new_users_config(
    agent_env, host_nc, devsim_url, tmp_path
):
    """Warm pool: a booted spare becomes the user's gateway by hot-reloading
    their config: their token works, the spare's does not, and no process is
    started for them."""
    base = free_port()
    env = {
        **agent_env,
        "WARM_POOL_SIZE": "1",
        "HOST_PORT_RANGE_START": str(base),
        "HOST_PORT_RANGE_END": str(base + 1000),
        "HOST_PORT_STRIDE": "120",
    }
    host_id = env["HOST_ID"]
    data = Path(env["HOST_DATA_DIR"])
    agent = AgentProcess(env, tmp_path / "agent.log")
    await agent.start(host_nc)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(900):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{base}/readyz")).is_success:
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the spare never answered /readyz")
        spare = gateway_leaders(base)
        assert len(spare) == 1

        user_id = uuid.uuid4()
        token = secrets.token_urlsafe(24)
        spec = gateway_spec(user_id, base, token, devsim_url)
        created = await create(host_nc, host_id, spec)
        assert created.container.state == "running"
        assert gateway_leaders(base) == spare
        assert (data / str(user_id)).is_symlink()
        answer = await chat(base, token, "hello from a warm spare")
        assert answer.startswith("Echo: hello from a warm spare")
    finally:
        if agent.proc and agent.proc.returncode is None:
            agent.proc.terminate()  # a clean stop retires the refilled spare
            await agent.proc.wait()
    agent_log = (tmp_path / "agent.log").read_text()
    assert "host_agent.warm.taken" in agent_log
    assert token not in agent_log
