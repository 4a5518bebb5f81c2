"""The agent as a whole: heartbeats, adoption after a restart, supervision, ops."""

from __future__ import annotations

import json
import uuid

import httpx
import psutil
import pytest
from yourclaw_common.embedded import free_port
from yourclaw_common.events import HostVerb, container_name
from yourclaw_common.sealing import HOST_KEY_FILE, HostKey, HostKeyError
from yourclaw_common.testing import eventually

from .conftest import make_spec, next_beat, spec_payload


def gateways_in(data_dir, spec) -> list[int]:
    """Pids of the live gateway processes whose working directory is the user's
    workspace, whatever the agent's files say."""
    workspace = str((data_dir / str(spec.user_id) / "workspace").resolve())
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
        if (
            proc.info["cwd"] == workspace
            and "gateway" in (proc.info["cmdline"] or [])
            and proc.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(proc.info["pid"])
    return found


class TestHeartbeat:
    async def test_announces_host_and_what_runs(
        self, fake_runtime, start_agent, host_nc
    ):
        agent = await start_agent(
            fake_runtime(), host_address="10.1.2.3", host_capacity=7
        )
        empty = await next_beat(host_nc, agent.host_id)
        assert (empty.address, empty.runtime, empty.capacity, empty.used) == (
            "10.1.2.3",
            "process",
            7,
            0,
        )
        assert empty.containers == ()
        spec = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok

        beat = await next_beat(
            host_nc,
            agent.host_id,
            where=lambda b: any(c.state == "running" for c in b.containers),
        )

        assert beat.used == 1
        [container] = beat.containers
        assert (container.name, container.state, container.port) == (
            spec.name,
            "running",
            spec.port,
        )
        # Secrets never travel in a heartbeat.
        assert "s3cret" not in beat.model_dump_json()

    async def test_stopped_containers_are_reported(
        self, fake_runtime, start_agent, host_nc
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
        assert (await agent.request(HostVerb.STOP, {"name": spec.name})).ok

        beat = await next_beat(
            host_nc, agent.host_id, where=lambda b: bool(b.containers)
        )

        assert [(c.name, c.state) for c in beat.containers] == [(spec.name, "stopped")]
        assert beat.used == 1


class TestHostKey:
    async def test_the_same_key_is_announced_until_it_is_lost(
        self, fake_runtime, start_agent, data_dir, host_nc
    ):
        host_id = f"h{uuid.uuid4().hex[:8]}"
        first = await start_agent(fake_runtime(), host_id=host_id)
        key = (await next_beat(host_nc, host_id)).public_key
        key_file = data_dir / HOST_KEY_FILE
        assert key is not None
        assert key_file.stat().st_mode & 0o777 == 0o600
        await first.shutdown()

        second = await start_agent(fake_runtime(), host_id=host_id)
        assert (await next_beat(host_nc, host_id)).public_key == key
        await second.shutdown()
        key_file.unlink()  # a new disk, or an operator's rotation
        await start_agent(fake_runtime(), host_id=host_id)

        new_key = (await next_beat(host_nc, host_id)).public_key
        assert new_key is not None
        assert new_key != key

    async def test_a_key_others_may_read_stops_the_agent(
        self, fake_runtime, start_agent, data_dir
    ):
        data_dir.mkdir(parents=True)
        HostKey.load_or_create(data_dir / HOST_KEY_FILE)
        (data_dir / HOST_KEY_FILE).chmod(0o640)

        with pytest.raises(HostKeyError, match="chmod 600"):
            await start_agent(fake_runtime())


class TestAgentRestart:
    async def test_running_gateways_are_adopted_not_duplicated(
        self, fake_runtime, start_agent, data_dir, host_nc
    ):
        host_id = f"h{uuid.uuid4().hex[:8]}"
        first = await start_agent(fake_runtime(), host_id=host_id)
        spec = make_spec()
        assert (await first.request(HostVerb.CREATE, spec_payload(spec))).ok
        health = await first.request(
            HostVerb.HEALTH, {"name": spec.name, "wait_seconds": 10}
        )
        assert health.container.healthy
        pid_file = data_dir / str(spec.user_id) / "run" / "gateway.pid"
        pid_before = json.loads(pid_file.read_text())["pid"]

        await first.shutdown()
        # The gateway outlives its agent.
        async with httpx.AsyncClient() as http:
            assert (
                await http.get(f"http://127.0.0.1:{spec.port}/healthz")
            ).status_code == 200
        second = await start_agent(fake_runtime(), host_id=host_id)

        listed = await second.request(HostVerb.LIST, {})
        assert [(c.name, c.state) for c in listed.containers] == [
            (spec.name, "running")
        ]
        again = await second.request(HostVerb.CREATE, spec_payload(spec))
        assert again.ok
        assert again.container.state == "running"
        assert json.loads(pid_file.read_text())["pid"] == pid_before
        beat = await next_beat(host_nc, host_id, where=lambda b: bool(b.containers))
        assert beat.containers[0].state == "running"
        assert (await second.request(HostVerb.REMOVE, {"name": spec.name})).ok

    async def test_a_gateway_no_pid_file_names_is_adopted_not_duplicated(
        self, fake_runtime, start_agent, data_dir
    ):
        # An agent killed between spawning a gateway and writing its pid file.
        host_id = f"h{uuid.uuid4().hex[:8]}"
        first = await start_agent(fake_runtime(), host_id=host_id)
        spec = make_spec()
        assert (await first.request(HostVerb.CREATE, spec_payload(spec))).ok
        pid_file = data_dir / str(spec.user_id) / "run" / "gateway.pid"
        orphan = json.loads(pid_file.read_text())["pid"]
        await first.shutdown()
        pid_file.unlink()

        second = await start_agent(fake_runtime(), host_id=host_id)
        again = await second.request(HostVerb.CREATE, spec_payload(spec))

        assert again.ok
        assert json.loads(pid_file.read_text())["pid"] == orphan
        assert gateways_in(data_dir, spec) == [orphan]

        # The orphan may still be binding its port (it was spawned a moment
        # ago), so it is listed as starting until it answers, then running.
        async def listed_running() -> bool:
            listed = await second.request(HostVerb.LIST, {})
            return [(c.name, c.state) for c in listed.containers] == [
                (spec.name, "running")
            ]

        await eventually(listed_running, timeout=15)
        assert gateways_in(data_dir, spec) == [orphan]

    async def test_remove_stops_a_gateway_no_pid_file_names(
        self, fake_runtime, start_agent, data_dir
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
        pid_file = data_dir / str(spec.user_id) / "run" / "gateway.pid"
        orphan = json.loads(pid_file.read_text())["pid"]
        pid_file.unlink()

        assert (await agent.request(HostVerb.REMOVE, {"name": spec.name})).ok

        assert gateways_in(data_dir, spec) == []
        assert not psutil.pid_exists(orphan) or (
            psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
        )

    async def test_a_crashed_gateway_is_restarted(
        self, fake_runtime, start_agent, data_dir, tmp_path
    ):
        agent = await start_agent(fake_runtime())
        marker = tmp_path / "crashed-once"
        spec = make_spec(env={"FAKE_GATEWAY_CRASH_ONCE": str(marker)})

        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok

        async def healthy() -> bool:
            reply = await agent.request(HostVerb.HEALTH, {"name": spec.name})
            return bool(reply.container and reply.container.healthy)

        await eventually(healthy, timeout=15)
        assert marker.exists()


class TestOps:
    async def test_metrics_health_and_readiness(self, fake_runtime, start_agent):
        port = free_port()
        agent = await start_agent(fake_runtime(), metrics_port=port)
        await agent.request(HostVerb.INSPECT, {"name": container_name(uuid.uuid4())})

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            metrics = (await http.get("/metrics")).text
            ready = await http.get("/readyz")
            live = await http.get("/healthz")

        assert 'yourclaw_host_agent_commands_total{code="ok",verb="inspect"}' in metrics
        assert "yourclaw_host_agent_heartbeats_total" in metrics
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"nats": True, "runtime": True}
        assert live.status_code == 200
