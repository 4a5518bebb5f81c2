"""Sleeping assistants: SUSPENDED from heartbeats, healthy to reconcile and
placement, and woken on request (`assistant.wake.request`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest_asyncio
from yourclaw_common.events import (
    Subject,
    WakeAssistant,
    WakeReply,
    container_name,
)
from yourclaw_common.testing import eventually
from yourclaw_provisioner import repository
from yourclaw_provisioner.lifecycle import WAKE_FAILED_FLAG

from .conftest import assistant, jobs_of, provision, put_to_sleep, wait_status


async def ask_wake(nc, user_id, *, timeout=10.0) -> WakeReply:
    msg = await nc.request(
        Subject.ASSISTANT_WAKE.value,
        WakeAssistant(user_id=user_id).model_dump_json().encode(),
        timeout=timeout,
    )
    return WakeReply.model_validate_json(msg.data)


class TestSuspendedFromHeartbeats:
    async def test_a_sleeping_container_is_suspended_and_awake_again_ready(
        self, ready_assistant, clean_db
    ):
        host, user_id, _ = await ready_assistant()
        name = container_name(user_id)

        await put_to_sleep(host, clean_db, user_id, "frozen")

        # The host-agent woke it on its own (a reminder due): READY again.
        host.containers[name].sleeping = None
        host.containers[name].state = "running"
        await wait_status(clean_db, user_id, "READY")

    async def test_reconcile_neither_recreates_nor_removes_a_sleeper(
        self, sleeping_assistant, clean_db
    ):
        host, user_id, _ = await sleeping_assistant("stopped")
        # Many reconcile passes (every 0.2 s) and heartbeats later…
        await asyncio.sleep(1.5)

        row = await assistant(clean_db, user_id)
        assert row["status"] == "SUSPENDED"
        assert row["last_error"] is None
        assert len(host.creates()) == 1
        assert host.removes() == []
        assert [j["reason"] for j in await jobs_of(clean_db, user_id)] == ["created"]

    async def test_a_sleeper_whose_container_vanished_is_recreated(
        self, sleeping_assistant, clean_db
    ):
        host, user_id, _ = await sleeping_assistant("stopped")
        name = container_name(user_id)

        host.vanish(name)

        async def recreated():
            row = await assistant(clean_db, user_id)
            return row["status"] == "READY" and len(host.creates()) == 2

        await eventually(recreated)
        assert host.running() == {name}


class TestPlacementOvercommit:
    async def test_sleepers_weigh_a_third_of_an_awake_assistant(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h-dense", capacity=2)
        await start_provisioner(assistant_sleep_overcommit=3)
        sleepers = [await make_user(), await make_user()]
        for user_id in sleepers:
            await provision(js, clean_db, user_id)
            host.sleep(container_name(user_id), "stopped")
        for user_id in sleepers:
            await wait_status(clean_db, user_id, "SUSPENDED")
        async with clean_db.acquire() as conn:
            # Counted in full, the host is full.
            assert not await repository.host_has_room(conn, "h-dense", overcommit=1)

        third = await make_user()
        row = await provision(js, clean_db, third)

        assert row["host_id"] == "h-dense"
        assert container_name(third) in host.running()


class TestWake:
    async def test_a_stopped_assistant_is_woken_and_ready(
        self, sleeping_assistant, nats_client, clean_db
    ):
        host, user_id, ready = await sleeping_assistant("stopped")
        name = container_name(user_id)

        reply = await ask_wake(nats_client, user_id)

        assert reply.ok, reply
        assert reply.seconds is not None
        assert reply.seconds >= 0
        (wake,) = host.wakes()
        assert wake.name == name
        assert wake.generation == ready["generation"]
        assert wake.wait_seconds > 0
        assert name in host.running()
        assert (await assistant(clean_db, user_id))["status"] == "READY"

    async def test_a_burst_of_requests_shares_one_wake(
        self, ready_assistant, nats_client, clean_db
    ):
        host, user_id, _ = await ready_assistant()
        host.wake_seconds = 0.5
        await put_to_sleep(host, clean_db, user_id, "frozen")

        replies = await asyncio.gather(
            *(ask_wake(nats_client, user_id) for _ in range(5))
        )

        assert all(r.ok for r in replies), replies
        assert len(host.wakes()) == 1

    async def test_a_failed_wake_answers_its_code_flags_and_a_later_one_works(
        self, sleeping_assistant, nats_client, clean_db
    ):
        host, user_id, _ = await sleeping_assistant("stopped")
        host.refuse_wakes = 1

        failed = await ask_wake(nats_client, user_id)

        assert not failed.ok
        assert failed.code == "WAKE_FAILED"
        row = await assistant(clean_db, user_id)
        # Still asleep (the next message tries again), and the dashboard says so.
        assert row["status"] == "SUSPENDED"
        assert row["last_error"] == WAKE_FAILED_FLAG

        again = await ask_wake(nats_client, user_id)

        assert again.ok, again
        row = await assistant(clean_db, user_id)
        assert (row["status"], row["last_error"]) == ("READY", None)

    async def test_a_user_without_an_assistant_gets_no_assistant(
        self, start_provisioner, fake_host, nats_client
    ):
        await fake_host("h1")
        await start_provisioner()

        reply = await ask_wake(nats_client, uuid.uuid4())

        assert (reply.ok, reply.code) == (False, "NO_ASSISTANT")

    async def test_a_malformed_request_is_answered_not_dropped(
        self, start_provisioner, fake_host, nats_client
    ):
        await fake_host("h1")
        await start_provisioner()

        msg = await nats_client.request(
            Subject.ASSISTANT_WAKE.value, b'{"user_id": "nope"}', timeout=5
        )

        reply = WakeReply.model_validate_json(msg.data)
        assert (reply.ok, reply.code) == (False, "INVALID_REQUEST")


async def holder_of(pool, host_id, port):
    return await pool.fetchval(
        "SELECT user_id FROM assistants WHERE host_id = $1 AND port = $2",
        host_id,
        port,
    )


class TestWakeOnATakenPort:
    async def test_the_assistant_moves_to_a_free_port_on_its_host(
        self, sleeping_assistant, nats_client, clean_db
    ):
        host, user_id, ready = await sleeping_assistant("stopped")
        name = container_name(user_id)
        # While it slept, another process took its port.
        host.taken_ports.add(ready["port"])

        reply = await ask_wake(nats_client, user_id)

        assert reply.ok, reply
        row = await assistant(clean_db, user_id)
        assert (row["status"], row["last_error"]) == ("READY", None)
        # Same host (its workspace is there), another port, a newer placement.
        assert row["host_id"] == ready["host_id"]
        assert row["port"] != ready["port"]
        assert row["base_url"] == f"http://127.0.0.1:{row['port']}"
        assert row["generation"] == ready["generation"] + 1
        assert await holder_of(clean_db, ready["host_id"], ready["port"]) is None
        # The host runs it, healthy, on the new port, from a spec of that port.
        created = host.creates()[-1]
        assert (created.name, created.port) == (name, row["port"])
        assert name in host.running()
        assert host.containers[name].spec.port == row["port"]
        assert host.workspaces[user_id]
        # No provisioning job: the user was never shown a (re)start.
        assert [j["reason"] for j in await jobs_of(clean_db, user_id)] == ["created"]

    async def test_a_burst_of_wakes_moves_it_once(
        self, sleeping_assistant, nats_client, clean_db
    ):
        host, user_id, ready = await sleeping_assistant("stopped")
        host.taken_ports.add(ready["port"])
        host.hold_creates = asyncio.Event()
        host.create_received.clear()

        first = [asyncio.create_task(ask_wake(nats_client, user_id)) for _ in range(3)]
        await asyncio.wait_for(host.create_received.wait(), timeout=10)
        # These arrive while the move is under way.
        later = [asyncio.create_task(ask_wake(nats_client, user_id)) for _ in range(2)]
        await asyncio.sleep(0.2)
        host.hold_creates.set()
        replies = await asyncio.gather(*first, *later)

        assert all(r.ok for r in replies), replies
        assert len(host.creates()) == 2
        assert len(host.wakes()) == 1
        row = await assistant(clean_db, user_id)
        assert row["generation"] == ready["generation"] + 1
        assert row["status"] == "READY"

    async def test_a_move_that_keeps_failing_stays_flagged_until_one_works(
        self, sleeping_assistant, nats_client, clean_db
    ):
        host, user_id, ready = await sleeping_assistant("stopped")
        host.taken_ports.add(ready["port"])
        host.fail_creates = 2

        for _ in range(2):
            failed = await ask_wake(nats_client, user_id)

            assert (failed.ok, failed.code) == (False, "WAKE_FAILED")
            assert "port" in (failed.error or "")
            row = await assistant(clean_db, user_id)
            # What the dashboard shows: asleep, with the warning; the next
            # message tries again.
            assert (row["status"], row["last_error"]) == (
                "SUSPENDED",
                WAKE_FAILED_FLAG,
            )

        again = await ask_wake(nats_client, user_id)

        assert again.ok, again
        row = await assistant(clean_db, user_id)
        assert (row["status"], row["last_error"]) == ("READY", None)
        assert row["port"] != ready["port"]
        assert host.containers[container_name(user_id)].spec.port == row["port"]
        # The failed attempts took no further ports: one move, one new port.
        assert row["generation"] == ready["generation"] + 1


@pytest_asyncio.fixture(loop_scope="session")
async def beside_a_neighbour(ready_assistant, make_user, js, clean_db):
    """A stopped sleeper and an awake neighbour on one host: (the fake host, the
    sleeper's user id, the neighbour's)."""
    host, user_id, _ = await ready_assistant()
    neighbour = await make_user()
    await provision(js, clean_db, neighbour)
    await put_to_sleep(host, clean_db, user_id, "stopped")
    return host, user_id, neighbour


class TestWakeOnAFullHost:
    async def test_a_host_without_room_fails_the_wake_flagged(
        self, beside_a_neighbour, nats_client, clean_db
    ):
        host, user_id, neighbour = beside_a_neighbour
        host.capacity = 1  # the awake neighbour fills it

        failed = await ask_wake(nats_client, user_id)

        assert (failed.ok, failed.code) == (False, "WAKE_FAILED")
        assert "workspace" in (failed.error or "")
        row = await assistant(clean_db, user_id)
        assert (row["status"], row["last_error"]) == ("SUSPENDED", WAKE_FAILED_FLAG)
        # Nothing of the awake neighbour's was touched, nothing moved hosts.
        assert [v for v, _ in host.commands if v == "stop"] == []
        assert container_name(neighbour) in host.running()
        assert row["host_id"] == host.host_id

    async def test_the_host_alone_decides_who_makes_room(
        self, beside_a_neighbour, nats_client, clean_db
    ):
        # The host stops a frozen or idle gateway itself before it answers
        # NO_CAPACITY; the provisioner does not second-guess it by stopping
        # a sleeper of its own choosing.
        host, user_id, neighbour = beside_a_neighbour
        await put_to_sleep(host, clean_db, neighbour, "frozen")
        host.capacity = 1  # the frozen neighbour fills it

        failed = await ask_wake(nats_client, user_id)

        assert (failed.ok, failed.code) == (False, "WAKE_FAILED")
        assert [v for v, _ in host.commands if v == "stop"] == []
        assert host.containers[container_name(neighbour)].sleeping == "frozen"
