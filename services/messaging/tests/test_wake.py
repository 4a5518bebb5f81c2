"""A message to a sleeping (SUSPENDED) assistant wakes it first: over real NATS
(`assistant.wake.request`, answered here as the provisioner would), Postgres
and the LLM and Twilio stand-ins. The gateway is a cuttable proxy in front of
the LLM stand-in: cut while the assistant sleeps, started by the wake."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from nats.aio.msg import Msg
from yourclaw_common.events import Subject, WakeAssistant, WakeReply
from yourclaw_common.nats import count_dead_letters, publish
from yourclaw_common.testing import cuttable
from yourclaw_common.testing.outage import Cuttable
from yourclaw_messaging import replies
from yourclaw_messaging.consumers import CONSUMERS

from .conftest import PHONE, count_messages, inbound, llm_requests, replies_settle


class Provisioner:
    """Serves `assistant.wake.request` like the provisioner: starts the
    gateway and marks the assistant READY, or refuses `refuse` times."""

    def __init__(self, nc, pool, gateway: Cuttable):
        self.nc, self.pool, self.gateway = nc, pool, gateway
        self.awake = True
        self.refuse = 0
        self.requests: list[uuid.UUID] = []

    async def sleep(self, user_id: uuid.UUID) -> None:
        await self.gateway.cut()
        self.awake = False
        await self.pool.execute(
            "UPDATE assistants SET status = 'SUSPENDED' WHERE user_id = $1", user_id
        )

    async def on_request(self, msg: Msg) -> None:
        request = WakeAssistant.model_validate_json(msg.data)
        self.requests.append(request.user_id)
        if self.refuse > 0:
            self.refuse -= 1
            reply = WakeReply(ok=False, code="WAKE_FAILED", error="injected")
        else:
            await asyncio.sleep(0.2)  # a frozen gateway resumes
            if not self.awake:
                await self.gateway.start()
                self.awake = True
            await self.pool.execute(
                "UPDATE assistants SET status = 'READY' WHERE user_id = $1",
                request.user_id,
            )
            reply = WakeReply(ok=True, seconds=0.2)
        await msg.respond(reply.model_dump_json().encode())


@pytest_asyncio.fixture(loop_scope="session")
async def sleeper(
    register, nats_client, clean_db, devsim_url
) -> AsyncIterator[tuple[uuid.UUID, Provisioner]]:
    """PHONE's user, whose assistant sleeps; the wake stand-in serving."""
    async with cuttable(devsim_url) as gateway:
        user_id = await register(PHONE, endpoint=gateway.url(devsim_url))
        provisioner = Provisioner(nats_client, clean_db, gateway)
        await provisioner.sleep(user_id)
        sub = await nats_client.subscribe(
            Subject.ASSISTANT_WAKE.value, cb=provisioner.on_request
        )
        await nats_client.flush()
        try:
            yield user_id, provisioner
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class TestWakeOnMessage:
    async def test_a_sleeping_assistant_is_woken_and_answers(
        self, sleeper, start_messaging, js, devsim, clean_db
    ):
        user_id, provisioner = sleeper
        await start_messaging()

        await publish(js, inbound(PHONE, "good morning", sid="SMwake1"))

        sent = await replies_settle(devsim, PHONE, 1)
        assert [m["body"] for m in sent] == ["Echo: good morning"]
        assert provisioner.requests == [user_id]
        assert len(await llm_requests(devsim)) == 1
        status = await clean_db.fetchval(
            "SELECT status FROM assistants WHERE user_id = $1", user_id
        )
        assert status == "READY"

    async def test_a_burst_is_answered_in_order_none_lost_or_doubled(
        self, sleeper, start_messaging, js, devsim, clean_db
    ):
        user_id, provisioner = sleeper
        await start_messaging(rate_limit_msg_per_min=0, rate_limit_msg_per_day=0)

        for i in range(10):
            await publish(js, inbound(PHONE, f"message {i}", sid=f"SMburst{i}"))

        sent = await replies_settle(devsim, PHONE, 10, wait=1.5)
        assert [m["body"] for m in sent] == [f"Echo: message {i}" for i in range(10)]
        assert len(await llm_requests(devsim)) == 10
        # The first turn woke it; the others found it awake.
        assert provisioner.requests == [user_id]
        outbound = await count_messages(
            clean_db, "direction = 'OUTBOUND' AND user_id = $1", user_id
        )
        assert outbound == 10
        assert await count_dead_letters(js, CONSUMERS.MESSAGING_INBOUND_WHATSAPP) == 0

    async def test_a_failed_wake_is_retried_on_redelivery(
        self, sleeper, start_messaging, js, devsim
    ):
        user_id, provisioner = sleeper
        provisioner.refuse = 1
        await start_messaging()

        await publish(js, inbound(PHONE, "are you there", sid="SMretry"))

        sent = await replies_settle(devsim, PHONE, 1, wait=1.5)
        assert [m["body"] for m in sent] == ["Echo: are you there"]
        assert provisioner.requests == [user_id, user_id]
        assert len(await llm_requests(devsim)) == 1

    async def test_a_wake_that_keeps_failing_gets_one_readable_message(
        self, sleeper, start_messaging, js, devsim, clean_db
    ):
        user_id, provisioner = sleeper
        provisioner.refuse = 100
        await start_messaging(assistant_not_ready_deliveries=2)

        await publish(js, inbound(PHONE, "hello?", sid="SMnowake"))

        sent = await replies_settle(devsim, PHONE, 1, wait=3)
        assert [m["body"] for m in sent] == [replies.WAKE_FAILED]
        assert await llm_requests(devsim) == []
        assert len(provisioner.requests) == 2
        status = await clean_db.fetchval(
            "SELECT status FROM assistants WHERE user_id = $1", user_id
        )
        assert status == "SUSPENDED"

        # The next message tries again, and the assistant answers it.
        provisioner.refuse = 0
        await publish(js, inbound(PHONE, "now?", sid="SMnowake2"))
        sent = await replies_settle(devsim, PHONE, 2, wait=1)
        assert sent[1]["body"] == "Echo: now?"


class TestStatus:
    async def test_status_says_asleep(self, sleeper, start_messaging, js, devsim):
        await start_messaging()

        await publish(js, inbound(PHONE, "/status", sid="SMstatus"))

        sent = await replies_settle(devsim, PHONE, 1)
        assert "*Your assistant*: asleep, wakes when you write" in sent[0]["body"]
