"""Command semantics over real NATS, with the process runtime running a stand-in
gateway (tests/fake_gateway.py) instead of OpenClaw."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
import pytest_asyncio
from yourclaw_common.events import HostVerb, container_name
from yourclaw_common.sealing import HOST_KEY_FILE, HostKey, seal_spec

from .conftest import make_spec, next_beat, spec_payload


async def _healthy(agent, name: str) -> None:
    reply = await agent.request(HostVerb.HEALTH, {"name": name, "wait_seconds": 15})
    assert reply.ok, reply
    assert reply.container.healthy is True


@pytest_asyncio.fixture(loop_scope="session")
async def one_gateway(fake_runtime, start_agent):
    """An agent on the stand-in runtime whose one gateway is created and
    healthy: (the agent, its spec)."""
    agent = await start_agent(fake_runtime())
    spec = make_spec()
    assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
    await _healthy(agent, spec.name)
    return agent, spec


class _OtherGateway(BaseHTTPRequestHandler):
    """Another test's gateway, as this host sees it: ready, and refusing
    any token but its own."""

    def do_GET(self) -> None:
        self._send(200 if self.path == "/readyz" else 401)

    def do_POST(self) -> None:
        self._send(401)

    def _send(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def _other_gateway_on(port: int) -> Iterator[None]:
    server = ThreadingHTTPServer(("127.0.0.1", port), _OtherGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _pid(data_dir, spec) -> int:
    record = json.loads(
        (data_dir / str(spec.user_id) / "run" / "gateway.pid").read_text()
    )
    return int(record["pid"])


class TestCreate:
    async def test_writes_files_and_env_then_starts(
        self, fake_runtime, start_agent, data_dir
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec()

        reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

        assert reply.ok, reply
        assert reply.container.name == spec.name
        assert reply.container.spec_hash == "h1"
        assert reply.container.port == spec.port
        assert reply.container.state in ("starting", "running")
        user_dir = data_dir / str(spec.user_id)
        config = user_dir / "config" / "openclaw.json"
        assert (
            json.loads(config.read_text())["gateway"]["auth"]["token"] == "s3cret-token"
        )
        assert config.stat().st_mode & 0o077 == 0  # the token is private
        assert (user_dir / "workspace" / "CLAUDE.md").read_text().startswith("# You")
        await _healthy(agent, spec.name)
        logs = await agent.request(HostVerb.LOGS, {"name": spec.name, "tail": 50})
        assert "FAKE_MARK=m1" in logs.logs
        assert f"state={user_dir / 'config'}" in logs.logs
        # The agent's own environment stays out of the gateway's.
        assert agent.settings.nats_url not in logs.logs

    async def test_second_create_with_same_hash_is_noop(self, one_gateway, data_dir):
        agent, spec = one_gateway
        first_pid = _pid(data_dir, spec)

        again = await agent.request(HostVerb.CREATE, spec_payload(spec))

        assert again.ok
        assert again.container.state == "running"
        assert _pid(data_dir, spec) == first_pid
        listed = await agent.request(HostVerb.LIST, {})
        assert [c.name for c in listed.containers] == [spec.name]

    async def test_new_hash_replaces_and_keeps_workspace(self, one_gateway, data_dir):
        agent, spec = one_gateway
        old_pid = _pid(data_dir, spec)
        memory = data_dir / str(spec.user_id) / "workspace" / "MEMORY.md"
        memory.write_text("the user likes tea\n")
        session = data_dir / str(spec.user_id) / "config" / "agents" / "s.sqlite"
        session.parent.mkdir(parents=True)
        session.write_text("sessions")

        changed = make_spec(
            spec.user_id,
            port=spec.port,
            spec_hash="h2",
            files={"config/openclaw.json": '{"model": "new"}'},
            env={"FAKE_MARK": "m2"},
        )
        reply = await agent.request(HostVerb.CREATE, spec_payload(changed))

        assert reply.ok, reply
        assert reply.container.spec_hash == "h2"
        await _healthy(agent, spec.name)
        assert _pid(data_dir, spec) != old_pid
        assert (
            not psutil.pid_exists(old_pid)
            or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
        )
        assert memory.read_text() == "the user likes tea\n"
        assert session.read_text() == "sessions"
        config = data_dir / str(spec.user_id) / "config" / "openclaw.json"
        assert json.loads(config.read_text()) == {"model": "new"}
        logs = await agent.request(HostVerb.LOGS, {"name": spec.name, "tail": 5})
        assert "FAKE_MARK=m2" in logs.logs

    async def test_same_hash_restarts_a_stopped_container(
        self, fake_runtime, start_agent
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
        stopped = await agent.request(HostVerb.STOP, {"name": spec.name})
        assert stopped.container.state == "stopped"

        reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

        assert reply.ok
        logs = await agent.request(HostVerb.LOGS, {"name": spec.name})
        assert reply.container.state in ("starting", "running"), logs.logs
        await _healthy(agent, spec.name)

    async def test_full_host_refuses_new_containers(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime(), host_capacity=1)
        first = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(first))).ok

        reply = await agent.request(HostVerb.CREATE, spec_payload(make_spec()))

        assert not reply.ok
        assert reply.code == "NO_CAPACITY"
        # Replacing what runs needs no extra room.
        replaced = make_spec(first.user_id, port=first.port, spec_hash="h2")
        assert (await agent.request(HostVerb.CREATE, spec_payload(replaced))).ok

    async def test_port_of_another_container_is_refused(
        self, fake_runtime, start_agent
    ):
        agent = await start_agent(fake_runtime())
        first = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(first))).ok

        reply = await agent.request(
            HostVerb.CREATE, spec_payload(make_spec(port=first.port))
        )

        assert not reply.ok
        assert reply.code == "PORT_IN_USE"

    @pytest.mark.parametrize(
        "rel",
        [
            "../escape.txt",
            "/etc/passwd",
            "run/container.json",
            "config/../../x",
            "README",
        ],
    )
    async def test_file_outside_config_and_workspace_is_refused(
        self, fake_runtime, start_agent, data_dir, rel
    ):
        agent = await start_agent(fake_runtime())

        reply = await agent.request(
            HostVerb.CREATE, spec_payload(make_spec(files={rel: "x"}))
        )

        assert not reply.ok
        assert reply.code == "INVALID_SPEC"
        assert not (data_dir.parent / "escape.txt").exists()

    async def test_name_of_another_user_is_refused(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime())
        spec = make_spec().model_copy(update={"name": container_name(uuid.uuid4())})

        reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

        assert (reply.ok, reply.code) == (False, "INVALID_SPEC")

    async def test_malformed_requests_answer_errors(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime())

        garbage = await agent.request(HostVerb.CREATE, b"{not json")
        missing = await agent.request(HostVerb.CREATE, {"spec": {"port": 1}})
        bad_name = await agent.request(HostVerb.STOP, {"name": "../../etc"})
        extra = await agent.request(HostVerb.INSPECT, {"name": "x", "surprise": 1})

        assert (garbage.ok, garbage.code) == (False, "INVALID_REQUEST")
        assert (missing.ok, missing.code) == (False, "INVALID_REQUEST")
        assert "spec.user_id" in missing.error
        assert (bad_name.ok, bad_name.code) == (False, "INVALID_REQUEST")
        assert (extra.ok, extra.code) == (False, "INVALID_REQUEST")
        # Still serving.
        assert (await agent.request(HostVerb.LIST, {})).ok

    async def test_secrets_are_not_echoed_in_errors(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime())
        spec = make_spec(env={"BAD NAME": "sk-live-secret"})

        reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

        assert not reply.ok
        assert "sk-live-secret" not in reply.model_dump_json()


class TestRemove:
    async def test_missing_container_is_ok(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime())

        reply = await agent.request(
            HostVerb.REMOVE, {"name": container_name(uuid.uuid4())}
        )

        assert reply.ok
        assert reply.container.state == "missing"

    async def test_stops_the_gateway_group_and_keeps_the_workspace(
        self, one_gateway, data_dir
    ):
        agent, spec = one_gateway
        logs = (await agent.request(HostVerb.LOGS, {"name": spec.name})).logs
        helper = int(logs.split("helper=")[1].split()[0])
        pid = _pid(data_dir, spec)

        reply = await agent.request(HostVerb.REMOVE, {"name": spec.name})

        assert reply.ok
        for gone in (pid, helper):
            assert (
                not psutil.pid_exists(gone)
                or psutil.Process(gone).status() == psutil.STATUS_ZOMBIE
            )
        user_dir = data_dir / str(spec.user_id)
        assert (user_dir / "workspace" / "CLAUDE.md").exists()
        assert not (user_dir / "config").exists()  # the token goes with it
        assert not (user_dir / "run").exists()
        inspect = await agent.request(HostVerb.INSPECT, {"name": spec.name})
        assert inspect.container.state == "missing"
        assert (await agent.request(HostVerb.LIST, {})).containers == []

    async def test_purge_deletes_the_workspace(
        self, fake_runtime, start_agent, data_dir
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok

        reply = await agent.request(
            HostVerb.REMOVE, {"name": spec.name, "purge_workspace": True}
        )

        assert reply.ok
        assert not (data_dir / str(spec.user_id)).exists()


class TestFencing:
    async def test_a_remove_for_an_older_generation_keeps_the_container(
        self, fake_runtime, start_agent
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec()
        created = await agent.request(
            HostVerb.CREATE, {**spec_payload(spec), "generation": 2}
        )
        assert created.ok, created

        stale = await agent.request(
            HostVerb.REMOVE, {"name": spec.name, "generation": 1}
        )

        assert (stale.ok, stale.code) == (False, "STALE_GENERATION")
        await _healthy(agent, spec.name)
        current = await agent.request(
            HostVerb.REMOVE, {"name": spec.name, "generation": 2}
        )
        assert current.ok, current
        assert current.container.state == "missing"

    async def test_a_create_for_an_older_generation_is_refused(
        self, fake_runtime, start_agent
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec()
        assert (
            await agent.request(
                HostVerb.CREATE, {**spec_payload(spec), "generation": 5}
            )
        ).ok
        older = make_spec(spec.user_id, port=spec.port, spec_hash="h-old")

        reply = await agent.request(
            HostVerb.CREATE, {**spec_payload(older), "generation": 4}
        )

        assert (reply.ok, reply.code) == (False, "STALE_GENERATION")
        inspected = await agent.request(HostVerb.INSPECT, {"name": spec.name})
        assert inspected.container.spec_hash == "h1"

    async def test_an_expired_command_is_not_executed(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime())
        spec = make_spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
        # Buffered during a NATS outage; its sender stopped waiting long ago.
        late = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()

        reply = await agent.request(
            HostVerb.REMOVE, {"name": spec.name, "expires_at": late}
        )

        assert (reply.ok, reply.code) == (False, "COMMAND_EXPIRED")
        await _healthy(agent, spec.name)

    async def test_generations_survive_an_agent_restart(
        self, fake_runtime, start_agent
    ):
        runtime = fake_runtime()
        first = await start_agent(runtime, host_id="h-fence")
        spec = make_spec()
        assert (
            await first.request(
                HostVerb.CREATE, {**spec_payload(spec), "generation": 3}
            )
        ).ok
        await first.shutdown()

        second = await start_agent(fake_runtime(), host_id="h-fence")
        reply = await second.request(
            HostVerb.REMOVE, {"name": spec.name, "generation": 2}
        )

        assert (reply.ok, reply.code) == (False, "STALE_GENERATION")


class TestLifecycle:
    async def test_stop_start_restart_inspect(self, one_gateway, data_dir):
        agent, spec = one_gateway

        stopped = await agent.request(HostVerb.STOP, {"name": spec.name})
        assert stopped.container.state == "stopped"
        again = await agent.request(HostVerb.STOP, {"name": spec.name})
        assert again.ok
        assert again.container.state == "stopped"
        health = await agent.request(
            HostVerb.HEALTH, {"name": spec.name, "wait_seconds": 5}
        )
        assert health.ok
        assert health.container.healthy is False

        started = await agent.request(HostVerb.START, {"name": spec.name})
        assert started.container.state in ("starting", "running")
        await _healthy(agent, spec.name)
        before = _pid(data_dir, spec)
        restarted = await agent.request(HostVerb.RESTART, {"name": spec.name})
        assert restarted.ok
        await _healthy(agent, spec.name)
        assert _pid(data_dir, spec) != before
        inspected = await agent.request(HostVerb.INSPECT, {"name": spec.name})
        assert inspected.container.model_dump() == {
            "name": spec.name,
            "state": "running",
            "port": spec.port,
            "spec_hash": "h1",
            "healthy": None,
        }

    async def test_commands_on_a_missing_container(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime())
        name = container_name(uuid.uuid4())

        for verb in (HostVerb.START, HostVerb.RESTART, HostVerb.LOGS, HostVerb.HEALTH):
            reply = await agent.request(verb, {"name": name})
            assert (reply.ok, reply.code) == (False, "NOT_FOUND"), verb
        stop = await agent.request(HostVerb.STOP, {"name": name})
        inspect = await agent.request(HostVerb.INSPECT, {"name": name})
        assert stop.ok
        assert stop.container.state == "missing"
        assert inspect.ok
        assert inspect.container.state == "missing"

    async def test_health_waits_for_a_slow_gateway(self, fake_runtime, start_agent):
        agent = await start_agent(fake_runtime())
        spec = make_spec(env={"FAKE_GATEWAY_DELAY": "1.5"})
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok

        once = await agent.request(HostVerb.HEALTH, {"name": spec.name})
        waited = await agent.request(
            HostVerb.HEALTH, {"name": spec.name, "wait_seconds": 15}
        )

        assert once.ok
        assert once.container.healthy is False
        assert once.container.state == "starting"
        assert waited.container.healthy is True
        assert waited.container.state == "running"

    async def test_a_port_taken_while_the_gateway_boots_is_not_its_health(
        self, fake_runtime, start_agent
    ):
        # The port was free when checked before the spawn; another process
        # binds it while the gateway boots (seconds for OpenClaw), as another
        # test's gateway does in a full run. What answers /readyz there is
        # not this gateway: READY would send the user's turns to it.
        agent = await start_agent(fake_runtime())
        spec = make_spec(env={"FAKE_GATEWAY_DELAY": "60"})
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok

        with _other_gateway_on(spec.port):
            reply = await agent.request(
                HostVerb.HEALTH, {"name": spec.name, "wait_seconds": 3}
            )

            # The provisioner's next attempt: the same spec again.
            again = await agent.request(HostVerb.CREATE, spec_payload(spec))

        assert reply.ok, reply
        assert reply.container.healthy is False
        assert reply.container.state == "exited"
        # Refused as a port another process holds: the provisioner places the
        # gateway on another one.
        assert (again.ok, again.code) == (False, "PORT_IN_USE")

    async def test_logs_tail(self, one_gateway):
        agent, spec = one_gateway

        reply = await agent.request(HostVerb.LOGS, {"name": spec.name, "tail": 1})

        assert reply.ok
        assert reply.logs == "[gateway] ready"

    async def test_unknown_verb_is_not_served(self, start_agent, fake_runtime, host_nc):
        agent = await start_agent(fake_runtime())
        from nats.errors import NoRespondersError

        with pytest.raises(NoRespondersError):
            await host_nc.request(f"host.{agent.host_id}.explode", b"{}", timeout=1)


def test_env_is_private(tmp_path):
    # Covered end to end above; here the file mode of env.json (LLM keys).
    from yourclaw_host_agent.runtimes.process import _write_json

    target = tmp_path / "env.json"
    _write_json(target, {"OPENAI_API_KEY": "sk"})
    assert os.stat(target).st_mode & 0o077 == 0


def _logged(caplog) -> str:
    """Every log line of the agent, its fields unredacted."""
    return "\n".join(
        f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records
    )


class TestSealedSpecs:
    async def test_a_sealed_spec_is_opened_and_runs(
        self, fake_runtime, start_agent, data_dir, host_nc, caplog
    ):
        caplog.set_level(logging.DEBUG)
        agent = await start_agent(fake_runtime())
        # The key the provisioner seals to: the one the heartbeat announces.
        beat = await next_beat(host_nc, agent.host_id)
        spec = make_spec()
        wire = spec_payload(seal_spec(spec, beat.public_key))
        assert "s3cret-token" not in json.dumps(wire)

        reply = await agent.request(HostVerb.CREATE, wire)

        assert reply.ok, reply
        assert reply.container.spec_hash == spec.spec_hash
        config = data_dir / str(spec.user_id) / "config" / "openclaw.json"
        assert json.loads(config.read_text())["gateway"]["auth"]["token"] == (
            "s3cret-token"
        )
        await _healthy(agent, spec.name)
        logs = await agent.request(HostVerb.LOGS, {"name": spec.name, "tail": 50})
        assert "FAKE_MARK=m1" in logs.logs  # the sealed env reached the gateway
        # Sealed again (new ciphertext, same spec): still the same container.
        again = await agent.request(
            HostVerb.CREATE, spec_payload(seal_spec(spec, beat.public_key))
        )
        assert again.ok
        assert again.container.state == "running"
        assert "s3cret-token" not in _logged(caplog)

    async def test_a_spec_sealed_to_another_hosts_key_is_refused(
        self, fake_runtime, start_agent, data_dir, caplog
    ):
        caplog.set_level(logging.DEBUG)
        agent = await start_agent(fake_runtime())
        other_host = HostKey.generate()
        spec = make_spec()

        reply = await agent.request(
            HostVerb.CREATE, spec_payload(seal_spec(spec, other_host.public_key))
        )

        assert (reply.ok, reply.code) == (False, "SEALED_FOR_ANOTHER_KEY")
        assert other_host.key_id in reply.error
        assert not (data_dir / str(spec.user_id)).exists()
        assert (await agent.request(HostVerb.LIST, {})).containers == []
        [refused] = [
            r for r in caplog.records if r.getMessage() == "host_agent.command.refused"
        ]
        assert refused.levelname == "WARNING"
        assert refused.fields["code"] == "SEALED_FOR_ANOTHER_KEY"
        assert "s3cret-token" not in _logged(caplog)
        # Still serving: the same spec sealed to this host's key runs.
        own = HostKey.load_or_create(data_dir / HOST_KEY_FILE)
        assert (
            await agent.request(
                HostVerb.CREATE, spec_payload(seal_spec(spec, own.public_key))
            )
        ).ok

    async def test_a_tampered_box_is_refused(self, fake_runtime, start_agent, host_nc):
        agent = await start_agent(fake_runtime())
        beat = await next_beat(host_nc, agent.host_id)
        victim, attacker = make_spec(), make_spec()
        stolen = seal_spec(victim, beat.public_key).sealed
        # The victim's sealed secrets, moved into a spec for another user.
        moved = seal_spec(attacker, beat.public_key).model_copy(
            update={"sealed": stolen}
        )

        reply = await agent.request(HostVerb.CREATE, spec_payload(moved))

        assert (reply.ok, reply.code) == (False, "SEALED_SPEC_UNREADABLE")
        assert (await agent.request(HostVerb.LIST, {})).containers == []
