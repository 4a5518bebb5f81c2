from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    ContainerSpec,
    HostHeartbeat,
    HostReply,
    HostVerb,
    Subject,
    container_name,
    host_command,
)
from yourclaw_host_agent.app import run
from yourclaw_host_agent.layout import DataLayout
from yourclaw_host_agent.runtimes import ContainerRuntime
from yourclaw_host_agent.runtimes.process import ProcessRuntime
from yourclaw_host_agent.settings import HostAgentSettings

FAKE_GATEWAY = Path(__file__).with_name("fake_gateway.py")


def make_spec(
    user_id: uuid.UUID | None = None,
    *,
    port: int | None = None,
    spec_hash: str = "h1",
    files: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> ContainerSpec:
    user_id = user_id or uuid.uuid4()
    return ContainerSpec(
        user_id=user_id,
        name=container_name(user_id),
        port=port or free_port(),
        files=files
        if files is not None
        else {
            "config/openclaw.json": '{"gateway": {"auth": {"token": "s3cret-token"}}}',
            "workspace/CLAUDE.md": "# You are on WhatsApp\n",
        },
        env=env if env is not None else {"FAKE_MARK": "m1"},
        spec_hash=spec_hash,
    )


@dataclass
class Agent:
    """An agent running in-process, and a way to talk to it over NATS."""

    settings: HostAgentSettings
    stop: asyncio.Event
    task: asyncio.Task[None]
    nc: NATS

    @property
    def host_id(self) -> str:
        return self.settings.host_id

    async def request(
        self, verb: HostVerb, payload: dict[str, Any] | bytes, *, timeout: float = 30
    ) -> HostReply:
        data = payload if isinstance(payload, bytes) else _dump(payload)
        msg = await self.nc.request(
            host_command(self.host_id, verb), data, timeout=timeout
        )
        return HostReply.model_validate_json(msg.data)

    async def shutdown(self) -> None:
        self.stop.set()
        await self.task


async def next_beat(
    nc, host_id: str, *, where=lambda beat: True, timeout: float = 10
) -> HostHeartbeat:
    found: asyncio.Future[HostHeartbeat] = asyncio.get_running_loop().create_future()

    async def on_beat(msg) -> None:
        beat = HostHeartbeat.model_validate_json(msg.data)
        if beat.host_id == host_id and where(beat) and not found.done():
            found.set_result(beat)

    sub = await nc.subscribe(f"{Subject.HOST_HEARTBEAT.value}.*", cb=on_beat)
    try:
        return await asyncio.wait_for(found, timeout)
    finally:
        await sub.unsubscribe()


def _dump(payload: dict[str, Any]) -> bytes:
    import json

    return json.dumps(payload, default=str).encode()


def spec_payload(spec: ContainerSpec) -> dict[str, Any]:
    return {"spec": spec.model_dump(mode="json")}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest_asyncio.fixture(loop_scope="session")
async def fake_runtime(
    data_dir: Path,
) -> AsyncIterator[Callable[..., ProcessRuntime]]:
    """Process runtimes running the stand-in gateway; every gateway is gone after."""
    made: list[ProcessRuntime] = []

    def make(**kwargs: Any) -> ProcessRuntime:
        kwargs.setdefault("stop_timeout", 5.0)
        kwargs.setdefault("restart_backoff", 0.1)
        runtime = ProcessRuntime(
            DataLayout(data_dir.resolve()),
            openclaw_dir=data_dir / "no-openclaw",
            command=[sys.executable, str(FAKE_GATEWAY)],
            **kwargs,
        )
        made.append(runtime)
        return runtime

    yield make
    if made:
        for info in await made[-1].list():
            await made[-1].remove(info.name)
    for runtime in made:
        await runtime.close()  # stops spares of the warm pool


@pytest_asyncio.fixture(loop_scope="session")
async def host_nc(nats_url: str) -> AsyncIterator[NATS]:
    """A core NATS client (host commands need no JetStream, so no stream reset)."""
    import nats

    nc = await nats.connect(nats_url, name="pytest-host-agent")
    yield nc
    await nc.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def start_agent(
    nats_url: str, host_nc: NATS, data_dir: Path
) -> AsyncIterator[Callable[..., Awaitable[Agent]]]:
    """Start host-agents in-process (each with its own host id unless given)."""
    agents: list[Agent] = []

    async def start(
        runtime: ContainerRuntime, *, host_id: str | None = None, **overrides: Any
    ) -> Agent:
        values: dict[str, Any] = {
            "nats_url": nats_url,
            "host_id": host_id or f"h{uuid.uuid4().hex[:10]}",
            "host_data_dir": data_dir,
            "host_heartbeat_seconds": 0.2,
            "host_capacity": 4,
            "host_runtime": "process",
            "yourclaw_env": "dev",
        }
        values.update(overrides)
        settings = HostAgentSettings(_env_file=None, **values)  # type: ignore[call-arg]
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, stop, runtime=runtime))
        agent = Agent(settings, stop, task, host_nc)
        agents.append(agent)
        for _ in range(200):
            if task.done():
                task.result()
            try:
                await host_nc.request(
                    host_command(agent.host_id, HostVerb.LIST), b"{}", timeout=0.2
                )
                return agent
            except Exception:
                await asyncio.sleep(0.05)
        raise TimeoutError("the host-agent did not answer")

    yield start
    for agent in agents:
        agent.stop.set()
    await asyncio.gather(*(a.task for a in agents), return_exceptions=True)
