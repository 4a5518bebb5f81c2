"""End to end: a real inbound.whatsapp event → messaging → LLM + Twilio stand-ins."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys

import pytest
from yourclaw_common.crypto import SecretBox, generate_key
from yourclaw_common.events import (
    CONSUMERS,
    InboundWhatsAppStatus,
    Stream,
    UsageAllowanceWarning,
    UsageCapReached,
)
from yourclaw_common.nats import count_dead_letters, publish
from yourclaw_common.testing import cuttable, eventually
from yourclaw_common.testing.plugin import TEST_ACK_WAIT_SECONDS
from yourclaw_devkit.defaults import DEV_WHATSAPP_NUMBER
from yourclaw_devkit.pytest_plugin import MESSAGES_PATH, sent_to
from yourclaw_messaging import repository
from yourclaw_messaging.errors import Unstorable
from yourclaw_messaging.service import Conversation

from .conftest import AUTH, inbound

PHONE = "+15551230001"
STRANGER = "+15559870000"
OTHER = "+15551230002"


async def llm_requests(devsim) -> list[dict]:
    return (await devsim.get("/_devsim/llm/requests")).json()["requests"]


async def replies_settle(devsim, phone, count, *, wait=1.0):
    """Wait for `count` messages to `phone`, then a little more to catch extras."""
    await eventually(lambda: _has(devsim, phone, count), timeout=15)
    await asyncio.sleep(wait)
    return await sent_to(devsim, phone)


async def _has(devsim, phone, count):
    return len(await sent_to(devsim, phone)) >= count


class TestHandleInbound:
    async def test_registered_user_gets_the_assistants_reply(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "hello there", sid="SMhello1"))

        sent = await replies_settle(devsim, PHONE, 1)
        assert [m["body"] for m in sent] == ["Echo: hello there"]
        assert sent[0]["from"] == DEV_WHATSAPP_NUMBER

        (req,) = await llm_requests(devsim)
        assert req["session_key"] == f"wa:{user_id}"
        assert req["user"] == f"wa:{user_id}"
        assert req["model"] == "openclaw/default"
        assert req["has_authorization"]
        assert req["headers"]["x-openclaw-message-channel"] == "whatsapp"

        rows = await clean_db.fetch(
            "SELECT direction, body, status, twilio_sid, user_id FROM messages ORDER BY created_at"
        )
        assert [(r["direction"], r["status"]) for r in rows] == [
            ("INBOUND", "RECEIVED"),
            ("OUTBOUND", "SENT"),
        ]
        assert rows[0]["twilio_sid"] == "SMhello1"
        assert rows[1]["twilio_sid"] == sent[0]["sid"]
        usage = await clean_db.fetchrow(
            "SELECT * FROM usage_daily WHERE user_id = $1", user_id
        )
        assert (usage["inbound_count"], usage["outbound_count"]) == (1, 1)
        assert usage["tokens_out"] > 0

    async def test_message_sid_seen_before_does_nothing(
        self, start_messaging, register, js, devsim, clean_db
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "once", sid="SMonce"))
        await replies_settle(devsim, PHONE, 1, wait=0)
        # The same MessageSid again, past JetStream's dedupe (another Msg-Id), as
        # after the duplicate window: the database remembers it.
        event = inbound(PHONE, "once", sid="SMonce")
        await js.publish(
            "inbound.whatsapp",
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": "other"},
        )
        sent = await replies_settle(devsim, PHONE, 1, wait=1.5)
        assert len(sent) == 1
        assert len(await llm_requests(devsim)) == 1
        assert await clean_db.fetchval("SELECT count(*) FROM messages") == 2

    async def test_unknown_number_gets_one_signup_reply(
        self, start_messaging, js, devsim, clean_db
    ):
        await start_messaging()
        await publish(js, inbound(STRANGER, "hi who is this"))
        sent = await replies_settle(devsim, STRANGER, 1, wait=0)
        assert "Sign up at https://app.yourclaw.test" in sent[0]["body"]
        # More messages the same day: no more sign-up replies (no spam).
        await publish(js, inbound(STRANGER, "hello?"))
        await publish(js, inbound(STRANGER, "anyone?"))
        sent = await replies_settle(devsim, STRANGER, 1, wait=1.5)
        assert len(sent) == 1
        assert await llm_requests(devsim) == []
        assert (
            await clean_db.fetchval(
                "SELECT count(*) FROM messages WHERE direction = 'INBOUND' AND user_id IS NULL"
            )
            == 3
        )

    async def test_failing_assistant_gets_one_apology_and_no_retry_loop(
        self, start_messaging, register, js, devsim, nats_client
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "please #fail"))
        sent = await replies_settle(devsim, PHONE, 1, wait=TEST_ACK_WAIT_SECONDS + 1)
        assert len(sent) == 1
        assert sent[0]["body"].startswith("Sorry, your assistant couldn't answer")
        assert len(await llm_requests(devsim)) == 1
        info = await js.consumer_info(Stream.INBOUND, "messaging-inbound-whatsapp")
        assert info.num_ack_pending == 0
        assert info.num_redelivered == 0

    async def test_a_starting_assistant_is_waited_for_not_apologised_for(
        self, start_messaging, register, js, devsim, devsim_url, clean_db
    ):
        async with cuttable(devsim_url) as gateway:
            await gateway.cut()  # restarting: connections are refused
            await register(PHONE, endpoint=gateway.url(devsim_url))
            await start_messaging()
            await publish(js, inbound(PHONE, "are you up", sid="SMwait"))
            await eventually(
                lambda: clean_db.fetchval(
                    "SELECT 1 FROM messages WHERE twilio_sid = 'SMwait'"
                )
            )
            await asyncio.sleep(2)
            assert await sent_to(devsim, PHONE) == []

            await gateway.start()
            sent = await replies_settle(devsim, PHONE, 1, wait=1)

        assert [m["body"] for m in sent] == ["Echo: are you up"]
        assert len(await llm_requests(devsim)) == 1
        assert await count_dead_letters(js, CONSUMERS.MESSAGING_INBOUND_WHATSAPP) == 0

    async def test_an_assistant_that_never_starts_gets_one_apology(
        self, start_messaging, register, js, devsim, devsim_url
    ):
        async with cuttable(devsim_url) as gateway:
            await gateway.cut()
            await register(PHONE, endpoint=gateway.url(devsim_url))
            await start_messaging(assistant_not_ready_deliveries=2)
            await publish(js, inbound(PHONE, "hello?", sid="SMnever"))

            sent = await replies_settle(devsim, PHONE, 1, wait=3)

        assert len(sent) == 1
        assert sent[0]["body"].startswith("Sorry")

    async def test_assistant_timeout_gets_an_apology(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging(assistant_timeout_seconds=1)
        await publish(js, inbound(PHONE, "slow one #sleep=3"))
        sent = await replies_settle(devsim, PHONE, 1, wait=0)
        assert sent[0]["body"].startswith("Sorry")

    async def test_long_reply_is_split_in_order(
        self, start_messaging, register, js, devsim, clean_db
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "tell me a lot #long=4000"))
        sent = await replies_settle(devsim, PHONE, 3)
        assert len(sent) == 3
        assert all(len(m["body"]) <= 1600 for m in sent)
        parts = await clean_db.fetch(
            "SELECT part, body, twilio_sid FROM messages WHERE direction = 'OUTBOUND' ORDER BY part"
        )
        assert [p["twilio_sid"] for p in parts] == [m["sid"] for m in sent]
        assert sum(len(p["body"]) for p in parts) >= 4000 - 3

    async def test_assistant_not_ready_and_inactive_subscription_get_clear_replies(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await clean_db.execute(
            "UPDATE assistants SET status = 'PROVISIONING' WHERE user_id = $1", user_id
        )
        await start_messaging()
        await publish(js, inbound(PHONE, "are you there"))
        sent = await replies_settle(devsim, PHONE, 1, wait=0)
        assert "still being set up" in sent[0]["body"]
        await clean_db.execute(
            "UPDATE subscriptions SET status = 'CANCELED' WHERE user_id = $1", user_id
        )
        await publish(js, inbound(PHONE, "hello again"))
        sent = await replies_settle(devsim, PHONE, 2, wait=0)
        assert "subscription isn't active" in sent[1]["body"]
        assert await llm_requests(devsim) == []


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
        accepted = await devsim.post(
            MESSAGES_PATH,
            data={"To": f"whatsapp:{PHONE}", "From": DEV_WHATSAPP_NUMBER, "Body": body},
            auth=AUTH,
        )
        assert accepted.status_code == 201
        await start_messaging(twilio_status_callback_url=CALLBACK)
        await publish(
            js, inbound(PHONE, "crash between send and commit", sid="SMcrash")
        )
        await asyncio.sleep(1.5)
        # gateway-api publishes Twilio's callback with the id from its URL.
        await publish(
            js,
            InboundWhatsAppStatus(
                message_sid=accepted.json()["sid"],
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
            == accepted.json()["sid"]
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
        accepted = await devsim.post(
            MESSAGES_PATH,
            data={
                "To": f"whatsapp:{PHONE}",
                "From": DEV_WHATSAPP_NUMBER,
                "Body": apology,
            },
            auth=AUTH,
        )
        await start_messaging(
            twilio_status_callback_url=CALLBACK, twilio_send_confirm_seconds=1
        )
        await publish(
            js,
            InboundWhatsAppStatus(
                message_sid=accepted.json()["sid"],
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
                await clean_db.fetchval(
                    "SELECT count(*) FROM messages WHERE in_reply_to = 'SMkill' AND status = 'SENT'"
                )
                == 1
            )
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.terminate()
                    await asyncio.wait_for(proc.wait(), 15)


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


async def _count(awaitable, n):
    return len(await awaitable) >= n


class TestUnreadableToken:
    async def test_token_encrypted_with_another_key_gets_an_apology(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        other = SecretBox(generate_key()).encrypt("tok", owner=str(user_id))
        await clean_db.execute(
            "UPDATE assistants SET gateway_token_encrypted = $2 WHERE user_id = $1",
            user_id,
            other,
        )
        await start_messaging()
        await publish(js, inbound(PHONE, "hello"))
        sent = await replies_settle(devsim, PHONE, 1)
        assert len(sent) == 1
        assert sent[0]["body"].startswith("Sorry")
        assert await llm_requests(devsim) == []


async def spent_this_month(db, user_id, *, platform_usd, tokens=0, capped=False):
    """llm-proxy's totals for the user, as after their model calls."""
    await db.execute(
        "INSERT INTO llm_usage_monthly (user_id, month, calls, input_tokens, "
        "cost_microusd, platform_cost_microusd, cap_notified_at) "
        "VALUES ($1, date_trunc('month', now() AT TIME ZONE 'utc')::date, 3, $2, "
        "$3, $3, CASE WHEN $4 THEN now() END)",
        user_id,
        tokens,
        round(platform_usd * 1_000_000),
        capped,
    )


def usage_event(kind, user_id, *, spent, allowance=8.0):
    now = dt.datetime.now(dt.UTC)
    month = now.date().replace(day=1)
    resets = dt.datetime.combine(
        (month + dt.timedelta(days=32)).replace(day=1), dt.time(), dt.UTC
    )
    return kind(
        user_id=user_id,
        month=month,
        spent_usd=spent,
        allowance_usd=allowance,
        resets_at=resets,
    )


class TestModelAllowance:
    async def test_over_the_allowance_one_notice_and_no_model_call(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "hello", sid="SMcap1"))
        await replies_settle(devsim, PHONE, 1, wait=0)
        (await devsim.delete("/_devsim/llm/requests")).raise_for_status()

        # llm-proxy refused a call and said so (once a month, on the bus).
        await spent_this_month(clean_db, user_id, platform_usd=8.01, capped=True)
        await publish(js, usage_event(UsageCapReached, user_id, spent=8.01))
        await publish(js, usage_event(UsageCapReached, user_id, spent=8.01))
        await publish(js, inbound(PHONE, "are you there?", sid="SMcap2"))
        await publish(js, inbound(PHONE, "hello??", sid="SMcap3"))

        sent = await replies_settle(devsim, PHONE, 2, wait=1.5)
        assert len(sent) == 2, [m["body"] for m in sent]
        notice = sent[1]["body"]
        assert "used this month's allowance of $8.00" in notice
        assert "paused until" in notice
        assert await llm_requests(devsim) == []
        statuses = await clean_db.fetch(
            "SELECT status FROM messages WHERE in_reply_to IN ('SMcap2', 'SMcap3')"
        )
        assert [r["status"] for r in statuses] == ["SKIPPED", "SKIPPED"]

        # Commands still answer, with the spend.
        await publish(js, inbound(PHONE, "/usage", sid="SMcap4"))
        sent = await replies_settle(devsim, PHONE, 3, wait=0)
        assert "$8.01 of your $8.00 allowance (100%)" in sent[2]["body"]

    async def test_eighty_percent_gets_one_heads_up(
        self, start_messaging, register, js, devsim
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "hello", sid="SMwarn1"))
        await replies_settle(devsim, PHONE, 1, wait=0)

        for _ in range(2):
            await publish(js, usage_event(UsageAllowanceWarning, user_id, spent=6.5))

        sent = await replies_settle(devsim, PHONE, 2, wait=1.5)
        assert len(sent) == 2
        assert sent[1]["body"].startswith(
            "Heads-up: your assistant has used 81% of this month's allowance "
            "($6.50 of $8.00)."
        )

    async def test_usage_and_status_show_the_month_in_dollars_and_tokens(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await spent_this_month(clean_db, user_id, platform_usd=2.0, tokens=123_456)

        await publish(js, inbound(PHONE, "/usage", sid="SMusage1"))
        await publish(js, inbound(PHONE, "/status", sid="SMusage2"))

        sent = await replies_settle(devsim, PHONE, 2, wait=0)
        usage, status = sent[0]["body"], sent[1]["body"]
        assert "*Spent*: $2.00 of your $8.00 allowance (25%)" in usage
        assert "*Tokens*: 123,456 in 3 model calls" in usage
        assert "*This month*: $2.00 of $8.00 (25%), 123,456 tokens" in status
        assert await llm_requests(devsim) == []


class TestPoison:
    async def test_a_message_postgres_refuses_is_dead_lettered_at_once(
        self, start_messaging, register, js, devsim, clean_db
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "nul \x00 byte", sid="SMpoison"))
        await publish(js, inbound(PHONE, "after it", sid="SMafter"))

        sent = await replies_settle(devsim, PHONE, 1, wait=TEST_ACK_WAIT_SECONDS + 1)

        assert [m["body"] for m in sent] == ["Echo: after it"]
        spec = CONSUMERS.MESSAGING_INBOUND_WHATSAPP
        assert await count_dead_letters(js, spec) == 1
        info = await js.consumer_info(Stream.INBOUND, spec.durable)
        assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
        assert (
            await clean_db.fetchval(
                "SELECT count(*) FROM messages WHERE twilio_sid = 'SMpoison'"
            )
            == 0
        )

    async def test_a_refused_message_in_a_batch_fails_only_itself(
        self, register, clean_db, monkeypatch
    ):
        await register(PHONE)
        await register(OTHER)
        batches: list[int] = []
        receive = repository.receive

        async def counting(conn, batch, **kw):
            batches.append(len(batch))
            return await receive(conn, batch, **kw)

        monkeypatch.setattr(repository, "receive", counting)
        conversation = Conversation(
            pool=clean_db,
            twilio=None,
            assistant=None,
            secrets=None,
            sender=DEV_WHATSAPP_NUMBER,
            app_url="",
        )

        results = await asyncio.gather(
            conversation._receive(repository.Inbound("SMgood1", PHONE, "hi", 0)),
            conversation._receive(repository.Inbound("SMbad", STRANGER, "\x00", 0)),
            conversation._receive(repository.Inbound("SMgood2", OTHER, "yo", 0)),
            return_exceptions=True,
        )

        assert batches == [3, 1, 1, 1]
        assert results[0].is_new
        assert results[2].is_new
        assert isinstance(results[1], Unstorable)
        assert await clean_db.fetchval("SELECT count(*) FROM messages") == 2
