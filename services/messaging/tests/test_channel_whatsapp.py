"""WhatsApp delivery through Twilio: splitting, Twilio's errors and retries,
status callbacks, the window's template fallback, sends of unknown outcome."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid

import pytest
from yourclaw_common.events import (
    InboundWhatsAppStatus,
    OutboundWhatsApp,
    Stream,
)
from yourclaw_common.nats import count_dead_letters, publish
from yourclaw_common.testing import eventually
from yourclaw_common.testing.plugin import TEST_ACK_WAIT_SECONDS
from yourclaw_devkit.defaults import DEV_WHATSAPP_NUMBER
from yourclaw_devkit.llm_sim import build_reply
from yourclaw_devkit.pytest_plugin import MESSAGES_PATH, sent_to
from yourclaw_messaging import repository
from yourclaw_messaging.consumers import CONSUMERS

from .conftest import (
    AUTH,
    PHONE,
    TEMPLATE_NOTIFY,
    count_messages,
    devsim_sent,
    inbound,
    llm_requests,
    replies_settle,
    sample,
    settle,
)


class TestSplitting:
    async def test_5000_character_reply_arrives_in_order(self, texted, devsim):
        await texted("essay please #long=5000")
        sent = await settle(devsim, PHONE, 4)
        assert len(sent) == 4
        assert all(len(m["body"]) <= 1600 for m in sent)
        full = build_reply("#long=5000")
        assert " ".join(m["body"] for m in sent).split() == full.split()
        # Cut at sentence boundaries (the text itself ends mid-sentence).
        assert all(m["body"].endswith(".") for m in sent[:-1])


class TestTwilioErrors:
    async def test_20429_is_retried_and_the_reply_arrives_once(
        self, start_messaging, register, js, devsim, clean_db, twilio_faults
    ):
        await register(PHONE)
        before = sample(
            "yourclaw_messaging_twilio_sends_total",
            outcome="retried",
            error_code="20429",
        )
        await twilio_faults(PHONE, 20429, status=429, times=2)
        await start_messaging()
        await publish(js, inbound(PHONE, "busy day"))
        sent = await settle(devsim, PHONE, 1, wait=1.5)
        assert [m["body"] for m in sent] == ["Echo: busy day"]
        assert await clean_db.fetchval(
            "SELECT status FROM messages WHERE direction = 'OUTBOUND'"
        ) == ("SENT")
        after = sample(
            "yourclaw_messaging_twilio_sends_total",
            outcome="retried",
            error_code="20429",
        )
        assert after - before == 2

    async def test_invalid_recipient_is_recorded_not_retried(
        self, start_messaging, register, js, devsim, clean_db, twilio_faults
    ):
        await register(PHONE)
        await twilio_faults(PHONE, 21211, times=10)
        await start_messaging()
        await publish(js, inbound(PHONE, "hello?"))
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT status = 'FAILED' FROM messages WHERE direction = 'OUTBOUND'"
            ),
            timeout=10,
        )
        await asyncio.sleep(1.5)
        row = await clean_db.fetchrow(
            "SELECT status, error_code FROM messages WHERE direction = 'OUTBOUND'"
        )
        assert (row["status"], row["error_code"]) == ("FAILED", "21211")
        assert await sent_to(devsim, PHONE) == []
        info = await js.consumer_info(Stream.INBOUND, "messaging-inbound-whatsapp")
        assert info.num_redelivered == 0
        assert len(await llm_requests(devsim)) == 1


async def sending_replies(clean_db, user_id, count: int) -> list[uuid.UUID]:
    """`count` reply parts handed to Twilio, whose sids are not recorded yet."""
    return [
        await clean_db.fetchval(
            "INSERT INTO messages (user_id, phone_e164, direction, body, status, "
            "kind) VALUES ($1, $2, 'OUTBOUND', $3, 'SENDING', 'reply') RETURNING id",
            user_id,
            PHONE,
            f"part {i}",
        )
        for i in range(count)
    ]


class TestStatusCallbacks:
    async def test_status_never_moves_backwards(
        self, texted, register, js, devsim, clean_db
    ):
        await texted("track me")
        (msg,) = await settle(devsim, PHONE, 1, wait=0)
        sid = msg["sid"]
        for status in ("delivered", "sent", "read", "delivered", "queued"):
            await publish(
                js, InboundWhatsAppStatus(message_sid=sid, message_status=status)
            )

        async def read():
            return (
                await clean_db.fetchval(
                    "SELECT delivery_status FROM messages WHERE twilio_sid = $1", sid
                )
                == "read"
            )

        await eventually(read, timeout=10)
        await asyncio.sleep(1.0)
        assert await clean_db.fetchval(
            "SELECT delivery_status FROM messages WHERE twilio_sid = $1", sid
        ) == ("read")

    @staticmethod
    async def _sent_after_callback(clean_db, register, sid, status, error_code=None):
        """A callback for `sid` arrives before the send is recorded; then it is."""
        await clean_db.execute(
            "INSERT INTO twilio_statuses (twilio_sid, status, error_code) "
            "VALUES ($1, $2, $3)",
            sid,
            status,
            error_code,
        )
        user_id = await register(PHONE)
        await clean_db.execute(
            "INSERT INTO messages (user_id, phone_e164, direction, body, status, kind) "
            "VALUES ($1, $2, 'OUTBOUND', 'x', 'SENDING', 'reply')",
            user_id,
            PHONE,
        )
        async with clean_db.acquire() as conn:
            message_id = await conn.fetchval("SELECT id FROM messages")
            (changed,) = await repository.outbound.mark_sent(conn, [(message_id, sid)])
        return user_id, changed

    async def test_callback_before_the_send_is_recorded_is_applied_later(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """Twilio may call back before its API answer reaches us."""
        user_id, changed = await self._sent_after_callback(
            clean_db, register, "SMearly", "delivered"
        )
        assert changed is not None
        assert changed["delivery_status"] == "delivered"
        row = await clean_db.fetchrow("SELECT status, twilio_sid FROM messages")
        assert (row["status"], row["twilio_sid"]) == ("SENT", "SMearly")
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (1)

    async def test_sends_recorded_together_count_each_message_once(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        ids = await sending_replies(clean_db, user_id, 3)
        async with clean_db.acquire() as conn:
            early = await repository.outbound.mark_sent(
                conn, [(message_id, f"SMbatch{i}") for i, message_id in enumerate(ids)]
            )
        assert early == [None, None, None]
        rows = await clean_db.fetch(
            "SELECT id, status, twilio_sid FROM messages ORDER BY body"
        )
        assert [(r["id"], r["status"], r["twilio_sid"]) for r in rows] == [
            (message_id, "SENT", f"SMbatch{i}") for i, message_id in enumerate(ids)
        ]
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (3)

    async def test_each_send_names_its_message_in_the_callback_url(
        self, start_messaging, register, js, devsim, clean_db
    ):
        await register(PHONE)
        # Nothing listens there; the stand-in's callbacks fail quietly.
        callback = "http://127.0.0.1:9/api/v1/webhooks/twilio/status?tenant=eu"
        await start_messaging(twilio_status_callback_url=callback)
        await publish(js, inbound(PHONE, "where does my status go"))
        (msg,) = await settle(devsim, PHONE, 1, wait=0)
        message_id = await eventually(
            lambda: clean_db.fetchval(
                "SELECT id FROM messages WHERE twilio_sid = $1", msg["sid"]
            ),
            timeout=10,
        )
        assert msg["status_callback"] == f"{callback}&message_id={message_id}"

    async def test_a_template_twilio_took_before_a_crash_is_not_sent_again(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """A worker died after Twilio accepted a template, before recording it.

        Twilio's message list shows a template's rendered text, not its
        ContentSid, so the list cannot tell; the status callback names the
        message, and a redelivered event then finds it sent.
        """
        user_id = await register(PHONE)
        event = OutboundWhatsApp(user_id=user_id, body="Your report is done")
        variables = json.dumps({"1": "Your report is done"})
        message_id = await clean_db.fetchval(
            "INSERT INTO messages (user_id, phone_e164, direction, body, in_reply_to, "
            "part, status, kind, content_sid, content_variables, send_attempted_at) "
            "VALUES ($1, $2, 'OUTBOUND', 'Your report is done', $3, 0, 'SENDING', "
            "'template', $4, $5::jsonb, now()) RETURNING id",
            user_id,
            PHONE,
            f"out:{event.event_id}",
            TEMPLATE_NOTIFY,
            variables,
        )
        sid = await sent_directly(
            devsim, ContentSid=TEMPLATE_NOTIFY, ContentVariables=variables
        )
        await start_messaging(twilio_template_notification=TEMPLATE_NOTIFY)
        # gateway-api publishes Twilio's callback with the id from its URL.
        await publish(
            js,
            InboundWhatsAppStatus(
                message_sid=sid, message_status="sent", message_id=message_id
            ),
        )
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT status = 'SENT' FROM messages WHERE id = $1", message_id
            ),
            timeout=10,
        )
        handled = {
            "consumer": "messaging-outbound-whatsapp",
            "subject": "outbound.whatsapp",
            "outcome": "acked",
        }
        before = sample("yourclaw_messaging_events_consumed_total", **handled)
        await publish(js, event)  # the event the dead worker had: redelivered

        async def handled_again() -> bool:
            return (
                sample("yourclaw_messaging_events_consumed_total", **handled) > before
            )

        await eventually(handled_again, timeout=10)
        assert len(await devsim_sent(devsim, PHONE)) == 1
        row = await clean_db.fetchrow(
            "SELECT status, twilio_sid, delivery_status FROM messages WHERE id = $1",
            message_id,
        )
        assert tuple(row) == ("SENT", sid, "sent")
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (1)

    async def test_callbacks_racing_for_unrecorded_sends_all_land(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """`sent` and `delivered` for the same message, taken at once by two
        replicas while its send is not recorded yet: neither is lost, and the
        send is counted once."""
        user_id = await register(PHONE)
        ids = await sending_replies(clean_db, user_id, 80)
        await start_messaging()
        await start_messaging()
        for i, message_id in enumerate(ids):
            for status in ("sent", "delivered"):
                await publish(
                    js,
                    InboundWhatsAppStatus(
                        message_sid=f"SMrace{i}",
                        message_status=status,
                        message_id=message_id,
                    ),
                )

        async def all_delivered() -> bool:
            delivered = await count_messages(clean_db, "delivery_status = 'delivered'")
            return bool(delivered == len(ids))

        await eventually(all_delivered, timeout=20)
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == len(ids)

    async def test_a_send_recorded_after_its_callback_is_counted_once(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """The callback named the message and recorded it; then the sender's own
        record arrives, as it does when Twilio calls back before answering."""
        user_id, _ = await self._sent_after_callback(
            clean_db, register, "SMtwice", "sent"
        )
        message_id = await clean_db.fetchval("SELECT id FROM messages")
        async with clean_db.acquire() as conn:
            assert await repository.outbound.mark_sent(
                conn, [(message_id, "SMtwice")]
            ) == [None]
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (1)

    async def test_an_early_failure_callback_fails_the_message_as_it_is_recorded(
        self, start_messaging, register, js, devsim, clean_db
    ):
        _, changed = await self._sent_after_callback(
            clean_db, register, "SMearlyfail", "undelivered", "63016"
        )
        assert changed is not None
        assert (changed["delivery_status"], changed["error_code"]) == (
            "undelivered",
            "63016",
        )
        assert await clean_db.fetchval("SELECT status FROM messages") == "FAILED"


@pytest.mark.parametrize("status", ["sent", "delivered"])
async def test_status_for_an_unknown_sid_is_kept_for_later(
    status, start_messaging, js, clean_db
):
    await start_messaging()
    await publish(
        js,
        InboundWhatsAppStatus(message_sid=f"SMunknown{status}", message_status=status),
    )
    await eventually(
        lambda: clean_db.fetchval(
            "SELECT status FROM twilio_statuses WHERE twilio_sid = $1",
            f"SMunknown{status}",
        ),
        timeout=10,
    )


CALLBACK = "http://127.0.0.1:9/api/v1/webhooks/twilio/status"


async def inbound_row(pool, user_id, sid, body):
    await pool.execute(
        "INSERT INTO messages (user_id, phone_e164, direction, body, twilio_sid, status) "
        "VALUES ($1, $2, 'INBOUND', $3, $4, 'RECEIVED')",
        user_id,
        PHONE,
        body,
        sid,
    )


async def sending_row(pool, user_id, in_reply_to, body):
    """A reply part an earlier attempt stored and may have handed to Twilio."""
    return await pool.fetchval(
        "INSERT INTO messages (user_id, phone_e164, direction, body, in_reply_to, "
        "part, status, send_attempted_at) "
        "VALUES ($1, $2, 'OUTBOUND', $3, $4, 0, 'SENDING', now()) RETURNING id",
        user_id,
        PHONE,
        body,
        in_reply_to,
    )


async def sent_directly(devsim, **fields: str) -> str:
    """A message to PHONE Twilio accepted from a worker that died before
    recording it (`fields`: Body, or ContentSid and ContentVariables); its sid."""
    accepted = await devsim.post(
        MESSAGES_PATH,
        data={"To": f"whatsapp:{PHONE}", "From": DEV_WHATSAPP_NUMBER, **fields},
        auth=AUTH,
    )
    assert accepted.status_code == 201
    return accepted.json()["sid"]


async def _count(awaitable, n):
    return len(await awaitable) >= n


class TestDeliveryAfterCrash:
    async def test_send_whose_outcome_is_unknown_is_not_repeated(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """A worker died after Twilio accepted a part but before recording it:
        the redelivery waits for the status callback, which names the part."""
        user_id = await register(PHONE)
        body = "Echo: crash between send and commit"
        await inbound_row(clean_db, user_id, "SMcrash", body)
        message_id = await sending_row(clean_db, user_id, "SMcrash", body)
        twilio_sid = await sent_directly(devsim, Body=body)
        await start_messaging(twilio_status_callback_url=CALLBACK)
        await publish(
            js, inbound(PHONE, "crash between send and commit", sid="SMcrash")
        )
        await asyncio.sleep(1.5)
        # gateway-api publishes Twilio's callback with the id from its URL.
        await publish(
            js,
            InboundWhatsAppStatus(
                message_sid=twilio_sid,
                message_status="sent",
                message_id=message_id,
            ),
        )
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT status = 'SENT' FROM messages WHERE in_reply_to = 'SMcrash'"
            ),
            timeout=10,
        )
        await asyncio.sleep(2)
        assert len(await sent_to(devsim, PHONE)) == 1
        assert (
            await clean_db.fetchval(
                "SELECT twilio_sid FROM messages WHERE in_reply_to = 'SMcrash'"
            )
            == twilio_sid
        )
        assert await llm_requests(devsim) == []  # the stored reply was reused

    async def test_identical_apologies_are_told_apart_by_message_id(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """Two turns left the same apology SENDING; Twilio took only the first.
        Matched by body, both took its sid and the second hit the unique key."""
        user_id = await register(PHONE)
        apology = "Sorry, your assistant couldn't answer that just now."
        ids = []
        for sid in ("SMsorry1", "SMsorry2"):
            await inbound_row(clean_db, user_id, sid, "x")
            ids.append(await sending_row(clean_db, user_id, sid, apology))
        twilio_sid = await sent_directly(devsim, Body=apology)
        await start_messaging(
            twilio_status_callback_url=CALLBACK, twilio_send_confirm_seconds=1
        )
        await publish(
            js,
            InboundWhatsAppStatus(
                message_sid=twilio_sid,
                message_status="sent",
                message_id=ids[0],
            ),
        )
        await publish(js, inbound(PHONE, "x", sid="SMsorry1"))
        await publish(js, inbound(PHONE, "x", sid="SMsorry2"))

        sent = await replies_settle(devsim, PHONE, 2, wait=2)

        assert [m["body"] for m in sent] == [apology, apology]
        rows = await clean_db.fetch(
            "SELECT id, status, twilio_sid FROM messages WHERE id = ANY($1::uuid[])",
            ids,
        )
        assert {r["status"] for r in rows} == {"SENT"}
        assert {r["twilio_sid"] for r in rows} == {m["sid"] for m in sent}
        spec = CONSUMERS.MESSAGING_INBOUND_WHATSAPP
        assert await count_dead_letters(js, spec) == 0

    async def test_unconfirmed_send_is_sent_again_after_the_wait(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await inbound_row(clean_db, user_id, "SMnocb", "x")
        await sending_row(clean_db, user_id, "SMnocb", "Echo: x")
        await start_messaging(
            twilio_status_callback_url=CALLBACK, twilio_send_confirm_seconds=2
        )
        await publish(js, inbound(PHONE, "x", sid="SMnocb"))
        await asyncio.sleep(1)
        assert await sent_to(devsim, PHONE) == []

        sent = await replies_settle(devsim, PHONE, 1)

        assert [m["body"] for m in sent] == ["Echo: x"]

    async def test_send_that_never_reached_twilio_is_sent(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await clean_db.execute(
            "INSERT INTO messages (user_id, phone_e164, direction, body, twilio_sid, status) "
            "VALUES ($1, $2, 'INBOUND', 'x', 'SMlost', 'RECEIVED')",
            user_id,
            PHONE,
        )
        await clean_db.execute(
            "INSERT INTO messages (user_id, phone_e164, direction, body, in_reply_to, part, status, "
            "send_attempted_at) VALUES ($1, $2, 'OUTBOUND', 'Echo: x', 'SMlost', 0, 'SENDING', now())",
            user_id,
            PHONE,
        )
        await start_messaging()
        await publish(js, inbound(PHONE, "x", sid="SMlost"))
        sent = await replies_settle(devsim, PHONE, 1)
        assert [m["body"] for m in sent] == ["Echo: x"]

    @pytest.mark.slow
    async def test_worker_killed_mid_turn_redelivers_and_replies_once(
        self, messaging_env, register, js, devsim, clean_db, nats_client
    ):
        await register(PHONE)
        env = {**os.environ, **messaging_env}
        argv = [sys.executable, "-m", "yourclaw_messaging"]
        first = await asyncio.create_subprocess_exec(*argv, env=env)
        second = None
        try:
            await publish(
                js, inbound(PHONE, "long browser task #sleep=4", sid="SMkill")
            )
            # The turn is under way: the assistant has been asked.
            await eventually(lambda: _count(llm_requests(devsim), 1), timeout=20)
            first.send_signal(signal.SIGKILL)
            await asyncio.wait_for(first.wait(), 10)
            assert await sent_to(devsim, PHONE) == []

            second = await asyncio.create_subprocess_exec(*argv, env=env)
            sent = await replies_settle(
                devsim, PHONE, 1, wait=TEST_ACK_WAIT_SECONDS + 1
            )
            assert [m["body"] for m in sent] == ["Echo: long browser task #sleep=4"]
            assert len(await llm_requests(devsim)) == 2  # asked again after the crash
            assert (
                await count_messages(
                    clean_db, "in_reply_to = 'SMkill' AND status = 'SENT'"
                )
                == 1
            )
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.terminate()
                    await asyncio.wait_for(proc.wait(), 15)
