"""Idle assistants sleep (frozen, then stopped) and wake: on the process
runtime with the stand-in gateway, which writes OpenClaw's session database on
a turn and runs the jobs of its cron store when due."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psutil
from yourclaw_common.events import HostHeartbeat, HostVerb, Subject
from yourclaw_common.testing import eventually
from yourclaw_host_agent import service
from yourclaw_host_agent.swap import Swapped

from .conftest import make_spec, next_beat, spec_payload
from .fake_gateway import add_cron_job, cron_state


async def _done(beats: list[HostHeartbeat], name: str) -> bool:
    return any(_sleeping(b, name) == "stopped" for b in beats)


def _sleeping(beat: HostHeartbeat, name: str) -> str | None:
    (state,) = [c for c in beat.containers if c.name == name]
    return state.sleeping


def _asleep(name: str, depth: str | None):
    return lambda beat: any(
        c.name == name and c.sleeping == depth for c in beat.containers
    )


@asynccontextmanager
async def _heartbeats(nc, host_id: str) -> AsyncIterator[list[HostHeartbeat]]:
    """Every heartbeat of `host_id` while inside, in order, from the first."""
    beats: list[HostHeartbeat] = []

    async def record(msg) -> None:
        beats.append(HostHeartbeat.model_validate_json(msg.data))

    sub = await nc.subscribe(f"{Subject.HOST_HEARTBEAT.value}.{host_id}", cb=record)
    try:
        yield beats
    finally:
        await sub.unsubscribe()


async def _one_gateway(start_agent, fake_runtime, **settings):
    """An agent on the process runtime (with `settings`) and one healthy
    gateway it created: (agent, its spec)."""
    agent = await start_agent(fake_runtime(), **settings)
    spec = make_spec()
    await _create(agent, spec)
    return agent, spec


async def _create(agent, spec) -> None:
    reply = await agent.request(HostVerb.CREATE, spec_payload(spec))
    assert reply.ok, reply
    wake = await agent.request(HostVerb.HEALTH, {"name": spec.name, "wait_seconds": 15})
    assert wake.container.healthy is True


async def _turn(port: int) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={})
    assert resp.status_code == 200


def _group_state(data_dir, spec) -> str | None:
    import json

    pid_file = data_dir / str(spec.user_id) / "run" / "gateway.pid"
    if not pid_file.exists():
        return None
    try:
        return str(psutil.Process(json.loads(pid_file.read_text())["pid"]).status())
    except psutil.NoSuchProcess:
        return None


class TestIdle:
    async def test_idle_gateway_is_frozen_then_stopped_and_wakes(
        self, fake_runtime, start_agent, host_nc, data_dir
    ):
        agent, spec = await _one_gateway(
            start_agent,
            fake_runtime,
            idle_suspend_after_seconds=1.0,
            idle_stop_after_seconds=2.5,
        )

        frozen = await next_beat(
            host_nc, agent.host_id, where=_asleep(spec.name, "frozen")
        )
        (state,) = frozen.containers
        assert state.state == "paused"
        assert (frozen.awake, frozen.asleep) == (0, 1)
        assert _group_state(data_dir, spec) == psutil.STATUS_STOPPED

        stopped = await next_beat(
            host_nc, agent.host_id, where=_asleep(spec.name, "stopped")
        )
        assert stopped.containers[0].state == "stopped"
        assert _group_state(data_dir, spec) is None  # its memory is freed
        notes = data_dir / str(spec.user_id) / "workspace" / "CLAUDE.md"
        assert notes.exists()

        woken = await agent.request(
            HostVerb.WAKE, {"name": spec.name, "wait_seconds": 15}
        )
        assert woken.ok, woken
        assert (woken.container.state, woken.container.healthy) == ("running", True)
        awake = await next_beat(host_nc, agent.host_id, where=_asleep(spec.name, None))
        assert (awake.awake, awake.asleep) == (1, 0)

    async def test_a_boot_slower_than_the_idle_time_is_not_put_to_sleep(
        self, fake_runtime, start_agent, host_nc
    ):
        # It listens at once but is not ready for 4 s; it sleeps only after
        # it has answered and then been idle.
        agent = await start_agent(
            fake_runtime(), idle_suspend_after_seconds=1, idle_stop_after_seconds=2
        )
        spec = make_spec(env={"FAKE_GATEWAY_UNREADY": "4"})
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
        async with _heartbeats(host_nc, agent.host_id) as beats:
            ready = await agent.request(
                HostVerb.HEALTH, {"name": spec.name, "wait_seconds": 15}
            )
            booting = len(beats)
            await next_beat(host_nc, agent.host_id, where=_asleep(spec.name, "frozen"))
        assert ready.container.healthy is True
        assert booting >= 2, "no heartbeat while it booted"
        assert all(_sleeping(b, spec.name) is None for b in beats[:booting])

    async def test_turns_keep_it_awake(self, fake_runtime, start_agent, host_nc):
        agent, spec = await _one_gateway(
            start_agent, fake_runtime, idle_suspend_after_seconds=1.5
        )
        for _ in range(8):  # 4 s of turns, each well within the idle time
            await _turn(spec.port)
            await asyncio.sleep(0.5)
            beat = await next_beat(host_nc, agent.host_id)
            assert _sleeping(beat, spec.name) is None
        # Quiet from here on: it sleeps.
        await next_beat(host_nc, agent.host_id, where=_asleep(spec.name, "frozen"))

    async def test_a_turn_still_being_served_is_not_put_to_sleep(
        self, fake_runtime, start_agent, host_nc
    ):
        # A request the gateway is still answering (a model streaming for
        # minutes writes nothing meanwhile) holds a connection open: no sleep
        # while it does, however idle the database looks.
        agent, spec = await _one_gateway(
            start_agent, fake_runtime, idle_suspend_after_seconds=1
        )
        _, writer = await asyncio.open_connection("127.0.0.1", spec.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
        await writer.drain()
        try:
            for _ in range(6):  # 3 s: three times the idle time
                await asyncio.sleep(0.5)
                beat = await next_beat(host_nc, agent.host_id)
                assert _sleeping(beat, spec.name) is None
        finally:
            writer.close()
            await writer.wait_closed()
        await next_beat(host_nc, agent.host_id, where=_asleep(spec.name, "frozen"))

    async def test_zero_never_suspends(self, fake_runtime, start_agent, host_nc):
        agent, _ = await _one_gateway(
            start_agent,
            fake_runtime,
            idle_suspend_after_seconds=0,
            host_memory_reserve_mb=10**9,  # pressure, but sleeping is off
        )
        await asyncio.sleep(2.0)  # ten heartbeats
        beat = await next_beat(host_nc, agent.host_id)
        assert [(c.state, c.sleeping) for c in beat.containers] == [("running", None)]
        assert (beat.awake, beat.asleep) == (1, 0)


class TestVerbs:
    async def test_suspend_wake_and_an_unchanged_create_keeps_it_asleep(
        self, fake_runtime, start_agent, host_nc, data_dir
    ):
        agent, spec = await _one_gateway(start_agent, fake_runtime)

        suspended = await agent.request(HostVerb.SUSPEND, {"name": spec.name})
        assert suspended.ok, suspended
        assert suspended.container.state == "paused"
        # The provisioner re-sending the same spec does not wake it.
        again = await agent.request(HostVerb.CREATE, spec_payload(spec))
        assert again.ok, again
        assert again.container.state == "paused"
        assert _group_state(data_dir, spec) == psutil.STATUS_STOPPED

        woken = await agent.request(
            HostVerb.WAKE, {"name": spec.name, "wait_seconds": 10}
        )
        assert woken.container.healthy is True
        assert _group_state(data_dir, spec) != psutil.STATUS_STOPPED
        # Idempotent on an awake one: only the probe.
        twice = await agent.request(
            HostVerb.WAKE, {"name": spec.name, "wait_seconds": 10}
        )
        assert (twice.container.state, twice.container.healthy) == ("running", True)

    async def test_a_thaw_is_answered_without_waiting_for_the_gateways_recovery(
        self, fake_runtime, start_agent
    ):
        # OpenClaw frozen past a minute refreshes its health first thing as
        # it thaws, and its /readyz waits behind that; the turn need not.
        agent = await start_agent(fake_runtime())
        spec = make_spec(env={"FAKE_GATEWAY_THAW_UNREADY": "60"})
        await _create(agent, spec)
        assert (await agent.request(HostVerb.SUSPEND, {"name": spec.name})).ok
        await asyncio.sleep(1.5)  # long enough for the gateway to notice

        woken = await agent.request(
            HostVerb.WAKE, {"name": spec.name, "wait_seconds": 10}
        )

        assert (woken.container.state, woken.container.healthy) == ("running", True)
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{spec.port}/readyz")
        assert ready.status_code == 503  # still recovering from its thaw
        await _turn(spec.port)  # and a turn is answered meanwhile

    async def test_a_gateway_frozen_before_it_was_ready_is_probed_when_woken(
        self, fake_runtime, start_agent
    ):
        agent = await start_agent(fake_runtime())
        spec = make_spec(env={"FAKE_GATEWAY_UNREADY": "3"})
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
        assert (await agent.request(HostVerb.SUSPEND, {"name": spec.name})).ok

        woken = await agent.request(
            HostVerb.WAKE, {"name": spec.name, "wait_seconds": 15}
        )

        assert woken.container.healthy is True
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{spec.port}/readyz")
        assert ready.status_code == 200

    async def test_a_request_that_reaches_a_frozen_gateway_thaws_it(
        self, fake_runtime, start_agent, host_nc, data_dir
    ):
        # A turn that read the assistant awake a moment before it froze: the
        # host sees the request waiting and thaws the gateway, which answers.
        agent, spec = await _one_gateway(start_agent, fake_runtime)
        url = f"http://127.0.0.1:{spec.port}/v1/chat/completions"
        async with httpx.AsyncClient(timeout=10) as kept_alive:
            assert (await kept_alive.post(url, json={})).status_code == 200
            assert (await agent.request(HostVerb.SUSPEND, {"name": spec.name})).ok
            await next_beat(host_nc, agent.host_id, where=_asleep(spec.name, "frozen"))
            # Heartbeats and the host's own checks leave it frozen.
            for _ in range(3):
                beat = await next_beat(host_nc, agent.host_id)
                assert _sleeping(beat, spec.name) == "frozen"
            assert _group_state(data_dir, spec) == psutil.STATUS_STOPPED

            # On the connection it held open, then on a new one.
            assert (await kept_alive.post(url, json={})).status_code == 200
            awake = await next_beat(
                host_nc, agent.host_id, where=_asleep(spec.name, None)
            )
            assert awake.containers[0].state == "running"
            assert (await agent.request(HostVerb.SUSPEND, {"name": spec.name})).ok
        await _turn(spec.port)
        assert _group_state(data_dir, spec) != psutil.STATUS_STOPPED

    async def test_with_sleeping_off_a_frozen_gateway_adopted_after_a_restart_thaws_on_a_request(
        self, fake_runtime, start_agent, host_nc, data_dir
    ):
        # IDLE_SUSPEND_AFTER_SECONDS=0: this host never freezes a gateway
        # itself, but one frozen by the verb before the agent restarted must
        # not leave its user's next message hanging.
        first, spec = await _one_gateway(
            start_agent, fake_runtime, idle_suspend_after_seconds=0
        )
        assert (await first.request(HostVerb.SUSPEND, {"name": spec.name})).ok
        await first.shutdown()
        agent = await start_agent(
            fake_runtime(), host_id=first.host_id, idle_suspend_after_seconds=0
        )
        await next_beat(host_nc, agent.host_id, where=_asleep(spec.name, "frozen"))
        assert _group_state(data_dir, spec) == psutil.STATUS_STOPPED

        await _turn(spec.port)

        assert _group_state(data_dir, spec) != psutil.STATUS_STOPPED

    async def test_a_frozen_gateway_is_removed(
        self, fake_runtime, start_agent, data_dir
    ):
        agent, spec = await _one_gateway(start_agent, fake_runtime)
        assert (await agent.request(HostVerb.SUSPEND, {"name": spec.name})).ok
        pid_file = data_dir / str(spec.user_id) / "run" / "gateway.pid"
        import json

        pid = json.loads(pid_file.read_text())["pid"]
        removed = await agent.request(HostVerb.REMOVE, {"name": spec.name})
        assert removed.ok, removed
        assert removed.container.state == "missing"
        assert not psutil.pid_exists(pid) or (
            psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        )

    async def test_waking_a_stopped_one_whose_port_was_taken(
        self, fake_runtime, start_agent, host_nc
    ):
        agent, spec = await _one_gateway(
            start_agent,
            fake_runtime,
            idle_suspend_after_seconds=1,
            idle_stop_after_seconds=2,
        )
        await next_beat(host_nc, agent.host_id, where=_asleep(spec.name, "stopped"))
        squatter = await asyncio.start_server(
            lambda r, w: w.close(), "127.0.0.1", spec.port
        )
        try:
            reply = await agent.request(
                HostVerb.WAKE, {"name": spec.name, "wait_seconds": 5}
            )
        finally:
            squatter.close()
            await squatter.wait_closed()
        assert (reply.ok, reply.code) == (False, "PORT_IN_USE")
        # Still a sleeper the provisioner can re-place; a later wake works.
        beat = await next_beat(host_nc, agent.host_id)
        assert _sleeping(beat, spec.name) == "stopped"
        woken = await agent.request(
            HostVerb.WAKE, {"name": spec.name, "wait_seconds": 10}
        )
        assert woken.container.healthy is True

    async def test_a_full_host_stops_a_frozen_sleeper_to_boot_one_never_a_busy_one(
        self, fake_runtime, start_agent, host_nc
    ):
        agent = await start_agent(fake_runtime(), host_capacity=2)
        stopped, awake, frozen = make_spec(), make_spec(), make_spec()
        await _create(agent, stopped)
        await _create(agent, awake)
        assert (await agent.request(HostVerb.SUSPEND, {"name": stopped.name})).ok
        # The provisioner stops a sleeper: it stays one, stopped.
        assert (await agent.request(HostVerb.STOP, {"name": stopped.name})).ok
        await next_beat(host_nc, agent.host_id, where=_asleep(stopped.name, "stopped"))
        await _create(agent, frozen)  # one awake of two: room
        assert (await agent.request(HostVerb.SUSPEND, {"name": frozen.name})).ok

        # Two in memory (one awake, one frozen): the frozen one makes room.
        woken = await agent.request(
            HostVerb.WAKE, {"name": stopped.name, "wait_seconds": 10}
        )
        assert woken.container.healthy is True, woken
        beat = await next_beat(
            host_nc, agent.host_id, where=_asleep(stopped.name, None)
        )
        assert _sleeping(beat, frozen.name) == "stopped"
        assert (beat.awake, beat.asleep) == (2, 1)

        # Both in memory are awake and wrote a minute ago at most: neither
        # goes, so no boot of a third.
        refused = await agent.request(
            HostVerb.WAKE, {"name": frozen.name, "wait_seconds": 5}
        )
        assert (refused.ok, refused.code) == (False, "NO_CAPACITY")
        beat = await next_beat(host_nc, agent.host_id)
        assert _sleeping(beat, frozen.name) == "stopped"
        assert (beat.awake, beat.asleep) == (2, 1)

    async def test_a_full_host_of_awake_ones_stops_the_longest_quiet_one_not_serving(
        self, fake_runtime, start_agent, host_nc, monkeypatch
    ):
        # "Quiet for a minute" is a second here.
        monkeypatch.setattr(service, "_PRESSURE_MIN_IDLE_SECONDS", 1.0)
        agent = await start_agent(fake_runtime(), host_capacity=2)
        sleeper, quiet, busy = make_spec(), make_spec(), make_spec()
        await _create(agent, sleeper)
        assert (await agent.request(HostVerb.SUSPEND, {"name": sleeper.name})).ok
        assert (await agent.request(HostVerb.STOP, {"name": sleeper.name})).ok
        await _create(agent, quiet)
        await _create(agent, busy)
        await asyncio.sleep(1.5)
        # The quiet one wrote last but the other holds a turn open.
        await _turn(quiet.port)
        _, writer = await asyncio.open_connection("127.0.0.1", busy.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
        await writer.drain()
        try:
            refused = await agent.request(
                HostVerb.WAKE, {"name": sleeper.name, "wait_seconds": 5}
            )
            assert (refused.ok, refused.code) == (False, "NO_CAPACITY")
            await asyncio.sleep(1.5)  # now the quiet one is quiet long enough
            woken = await agent.request(
                HostVerb.WAKE, {"name": sleeper.name, "wait_seconds": 10}
            )
        finally:
            writer.close()
            await writer.wait_closed()
        assert woken.container.healthy is True, woken
        beat = await next_beat(
            host_nc, agent.host_id, where=_asleep(quiet.name, "stopped")
        )
        assert [_sleeping(beat, s.name) for s in (sleeper, busy)] == [None, None]

    async def test_a_swapped_sleeper_holds_no_room_a_boot_needs(
        self, fake_runtime, start_agent, host_nc, data_dir
    ):
        # Deep sleep: idle past the stop time, a gateway stays frozen with its
        # memory in swap. The process runtime cannot swap one gateway alone,
        # so the kernel's part is stood in for here (tests/test_sleep_containers.py
        # does it for real); what is tested is the host's bookkeeping: a
        # swapped sleeper holds no memory, so a boot on a full host leaves it
        # asleep where it is instead of stopping it to make room.
        runtime = fake_runtime()
        moved: list[str] = []

        async def swap_out(name: str, *, keep_free: int) -> Swapped:
            moved.append(name)
            return Swapped(swapped=700 << 20, resident=30 << 20)

        runtime.swap_out = swap_out  # type: ignore[method-assign]
        agent = await start_agent(
            runtime,
            host_capacity=1,
            idle_suspend_after_seconds=1,
            idle_stop_after_seconds=2,
        )
        sleeper, other = make_spec(), make_spec()
        await _create(agent, sleeper)

        async def swapped() -> bool:
            return moved == [sleeper.name]

        await eventually(swapped, timeout=15, interval=0.1)
        assert _group_state(data_dir, sleeper) == psutil.STATUS_STOPPED  # frozen
        # Another gateway, stopped by an operator, then woken: a boot.
        await _create(agent, other)
        assert (await agent.request(HostVerb.STOP, {"name": other.name})).ok

        woken = await agent.request(
            HostVerb.WAKE, {"name": other.name, "wait_seconds": 15}
        )

        assert woken.ok, woken
        assert woken.container.healthy is True
        beat = await next_beat(host_nc, agent.host_id)
        assert _sleeping(beat, sleeper.name) == "frozen"  # not stopped
        assert _group_state(data_dir, sleeper) == psutil.STATUS_STOPPED
        assert moved == [sleeper.name]  # swapped once, not again each heartbeat

    async def test_an_operator_stop_of_an_awake_one_is_no_sleep(
        self, fake_runtime, start_agent, host_nc
    ):
        agent, spec = await _one_gateway(start_agent, fake_runtime)
        assert (await agent.request(HostVerb.STOP, {"name": spec.name})).ok
        beat = await next_beat(
            host_nc,
            agent.host_id,
            where=lambda b: b.containers and b.containers[0].state == "stopped",
        )
        assert _sleeping(beat, spec.name) is None
        assert beat.asleep == 0


class TestRestart:
    async def test_memory_pressure_stops_the_longest_idle_frozen_first_after_an_agent_restart(
        self, fake_runtime, start_agent, host_nc
    ):
        first = await start_agent(fake_runtime())
        awake, older, newer = make_spec(), make_spec(), make_spec()
        for spec in (awake, older, newer):  # idle from their creates, in order
            await _create(first, spec)
            await asyncio.sleep(0.05)
        # Frozen in the other order: the idle time decides, not the freeze.
        for spec in (newer, older):
            assert (await first.request(HostVerb.SUSPEND, {"name": spec.name})).ok
        await first.shutdown()

        # A new agent adopts the frozen ones, and finds memory short; every
        # heartbeat it sends is recorded, from its first.
        async with _heartbeats(host_nc, first.host_id) as beats:
            await start_agent(
                fake_runtime(), host_id=first.host_id, host_memory_reserve_mb=10**9
            )
            await eventually(
                lambda: _done(beats, newer.name), timeout=15, interval=0.05
            )
        depths = [
            tuple(_sleeping(b, s.name) for s in (awake, older, newer)) for b in beats
        ]
        first_stop = next(d for d in depths if "stopped" in d)
        assert first_stop == (None, "stopped", "frozen")
        assert depths[-1] == (None, "stopped", "stopped")

    async def test_a_stopped_sleeper_is_adopted_and_a_half_done_wake_completes(
        self, fake_runtime, start_agent, host_nc
    ):
        runtime = fake_runtime()
        first = await start_agent(
            runtime, idle_suspend_after_seconds=1, idle_stop_after_seconds=2
        )
        spec, other = make_spec(), make_spec()
        await _create(first, spec)
        await _create(first, other)
        await next_beat(
            host_nc,
            first.host_id,
            where=lambda b: {c.sleeping for c in b.containers} == {"stopped"},
        )
        await first.shutdown()
        # An agent killed mid-wake: the gateway was started, the rest not done.
        await runtime.start(other.name)

        second = await start_agent(fake_runtime(), host_id=first.host_id)
        beat = await next_beat(host_nc, second.host_id)
        assert _sleeping(beat, spec.name) == "stopped"
        assert _sleeping(beat, other.name) is None
        for name in (spec.name, other.name):
            woken = await second.request(
                HostVerb.WAKE, {"name": name, "wait_seconds": 10}
            )
            assert woken.container.healthy is True, woken
        beat = await next_beat(host_nc, second.host_id, where=lambda b: b.awake == 2)
        assert beat.asleep == 0


class TestSchedule:
    async def test_a_reminder_wakes_it_ahead_of_due(
        self, fake_runtime, start_agent, host_nc, data_dir
    ):
        agent, spec = await _one_gateway(start_agent, fake_runtime, wake_lead_seconds=2)
        assert (await agent.request(HostVerb.SUSPEND, {"name": spec.name})).ok
        state_dir = data_dir / str(spec.user_id) / "config"
        due = time.time() + 4
        add_cron_job(state_dir, "reminder", due)
        # OpenClaw's own jobs (its heartbeat, every 30 min) wake nobody.
        add_cron_job(state_dir, "heartbeat-main", due - 3, declaration_key="hb:main")

        frozen = await next_beat(
            host_nc,
            agent.host_id,
            where=lambda b: b.containers[0].next_wake_at is not None,
        )
        assert frozen.containers[0].next_wake_at == int(due)
        assert frozen.containers[0].sleeping == "frozen"

        await next_beat(
            host_nc, agent.host_id, where=_asleep(spec.name, None), timeout=15
        )
        for _ in range(100):
            ran = cron_state(state_dir, "reminder").get("lastRunAtMs")
            if ran:
                break
            await asyncio.sleep(0.1)
        # A frozen gateway runs nothing: it ran because it was woken, when due.
        assert isinstance(ran, int)
        assert ran >= int(due * 1000)

    async def test_a_due_reminder_on_a_full_host_waits_and_heartbeats_go_on(
        self, fake_runtime, start_agent, host_nc, data_dir
    ):
        agent = await start_agent(
            fake_runtime(), host_capacity=1, wake_lead_seconds=600
        )
        sleeper, busy = make_spec(), make_spec()
        await _create(agent, sleeper)
        assert (await agent.request(HostVerb.SUSPEND, {"name": sleeper.name})).ok
        assert (await agent.request(HostVerb.STOP, {"name": sleeper.name})).ok
        await _create(agent, busy)  # the one gateway this host holds in memory
        add_cron_job(
            data_dir / str(sleeper.user_id) / "config", "reminder", time.time()
        )

        seen = []
        for _ in range(5):  # a second of heartbeats, each a refused wake
            beat = await next_beat(host_nc, agent.host_id)
            seen.append((_sleeping(beat, sleeper.name), _sleeping(beat, busy.name)))
        assert seen == [("stopped", None)] * 5
