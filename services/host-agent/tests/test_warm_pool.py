"""The process runtime's warm pool, with the stand-in gateway: a new user takes
a booted spare (no new process), anyone else cold-starts, and spares never
outlive the agent."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import psutil
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import HostVerb
from yourclaw_host_agent.runtimes.warm import port_free

from .conftest import Agent, make_spec, spec_payload

TOKEN = "the-users-own-token"
CONFIG = {"config/openclaw.json": json.dumps({"gateway": {"auth": {"token": TOKEN}}})}


def grid() -> range:
    base = free_port()
    return range(base, base + 70, 7)


async def spares_on(ports: range, count: int) -> list[int]:
    """The grid ports where spares answer /healthz, once there are `count`."""
    async with httpx.AsyncClient(timeout=1) as http:
        for _ in range(300):
            up = []
            for port in ports:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                        up.append(port)
                except httpx.HTTPError:
                    pass
            if len(up) >= count:
                return up
            await asyncio.sleep(0.05)
    raise AssertionError(f"no {count} spare(s) came up on {list(ports)}")


async def models_status(port: int, token: str) -> int:
    async with httpx.AsyncClient(timeout=2) as http:
        resp = await http.get(
            f"http://127.0.0.1:{port}/v1/models",
            headers={"Authorization": f"Bearer {token}"},
        )
    return resp.status_code


def gateway_pid(root: Path) -> int:
    return int(json.loads((root / "run" / "gateway.pid").read_text())["pid"])


@pytest_asyncio.fixture
async def pool_of_one(fake_runtime, start_agent) -> tuple[Agent, range, int]:
    """An agent keeping one spare, once it is up: the agent, its port grid and
    the spare's port."""
    ports = grid()
    agent = await start_agent(fake_runtime(warm_pool=1, port_grid=ports))
    [spare_port] = await spares_on(ports, 1)
    return agent, ports, spare_port


async def test_new_user_takes_the_spare_and_the_pool_refills(pool_of_one, data_dir):
    agent, ports, spare_port = pool_of_one
    [slot] = (data_dir / ".slots").iterdir()
    spare_pid = gateway_pid(slot)
    assert await models_status(spare_port, TOKEN) == 401  # nobody's token yet

    spec = make_spec(port=spare_port, env={}, files=CONFIG)
    reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

    assert reply.ok, reply
    assert reply.container.state == "running"
    user_dir = data_dir / str(spec.user_id)
    # The spare's own process now serves this user, with their token.
    assert user_dir.resolve() == slot.resolve()
    assert gateway_pid(user_dir) == spare_pid
    assert await models_status(spare_port, TOKEN) == 200
    listed = await agent.request(HostVerb.LIST, {})
    assert [(c.name, c.port) for c in listed.containers] == [(spec.name, spare_port)]
    # A new spare boots on the next free port of the grid.
    up = await spares_on(ports, 2)
    assert spare_port in up
    assert len(up) == 2


async def test_user_with_keys_or_a_workspace_cold_starts_on_the_spares_port(
    pool_of_one, data_dir
):
    agent, _, spare_port = pool_of_one
    [slot] = (data_dir / ".slots").iterdir()

    # LLM keys go in the environment, which a running process cannot take.
    spec = make_spec(port=spare_port, env={"FAKE_MARK": "byok"}, files=CONFIG)
    reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

    assert reply.ok, reply
    assert not slot.exists()  # the spare was stopped and its folder removed
    user_dir = data_dir / str(spec.user_id)
    assert not user_dir.is_symlink()
    health = await agent.request(
        HostVerb.HEALTH, {"name": spec.name, "wait_seconds": 10}
    )
    assert health.container.healthy is True
    logs = await agent.request(HostVerb.LOGS, {"name": spec.name, "tail": 20})
    assert "FAKE_MARK=byok" in logs.logs


async def test_remove_keeps_the_workspace_and_purge_deletes_the_spares_folder(
    pool_of_one, data_dir
):
    agent, ports, spare_port = pool_of_one
    spec = make_spec(
        port=spare_port, env={}, files={**CONFIG, "workspace/notes.md": "milk\n"}
    )
    assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
    user_dir = data_dir / str(spec.user_id)
    slot = user_dir.resolve()
    pid = gateway_pid(user_dir)

    assert (await agent.request(HostVerb.REMOVE, {"name": spec.name})).ok
    # The taken-over spare's process is the user's gateway: remove stops it.
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert port_free(spare_port) or spare_port in await spares_on(ports, 1)
    assert (user_dir / "workspace" / "notes.md").read_text() == "milk\n"
    assert not (user_dir / "config").exists()  # the token goes with the container

    purge = {"name": spec.name, "purge_workspace": True}
    assert (await agent.request(HostVerb.REMOVE, purge)).ok
    assert not user_dir.is_symlink()
    assert not user_dir.exists()
    assert not slot.exists()


async def test_spares_stop_with_the_agent(fake_runtime, start_agent, data_dir):
    ports = grid()
    agent = await start_agent(fake_runtime(warm_pool=2, port_grid=ports))
    up = await spares_on(ports, 2)

    await agent.shutdown()

    assert all(port_free(port) for port in up)
    assert list((data_dir / ".slots").iterdir()) == []


async def test_port_held_by_a_stray_process_is_refused_before_anything_is_written(
    fake_runtime, start_agent, data_dir
):
    agent = await start_agent(fake_runtime())
    with socket.socket() as stray:
        stray.bind(("127.0.0.1", 0))
        stray.listen()
        spec = make_spec(port=stray.getsockname()[1])

        reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

    assert reply.code == "PORT_IN_USE"
    assert not (data_dir / str(spec.user_id)).exists()
    # The provisioner's next port works, as for any new user.
    retry = make_spec(spec.user_id, port=free_port())
    assert (await agent.request(HostVerb.CREATE, spec_payload(retry))).ok
